#!/bin/sh
# The configuration file and the plugins it names: --check-config accepts
# a valid file, and each error names the file, the group and the key, or
# the plugin and its path. Configuration errors exit with EX_CONFIG (78).
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"

: > "$T/aliases"
CONF="$T/rampmail.conf"

# check_config: runs --check-config on $CONF; sets st, output in $T/out.
check_config () {
  rampmail --check-config >"$T/out" 2>&1
  st=$?
}

# says DESCRIPTION TEXT...: every TEXT appears (as a fixed string) on one
# line of $T/out.
says () {
  desc=$1
  shift
  pattern=""
  for text in "$@"; do
    pattern="$pattern.*$(printf '%s' "$text" | sed 's/[][\.*^$/]/\\&/g')"
  done
  if grep -q -- "${pattern#.\*}" "$T/out"; then
    check "$desc" true
  else
    check "$desc" false
    sed 's/^/#   /' "$T/out"
  fi
}

# set_plugin_dir DIR: points $CONF's plugin_dir at DIR.
set_plugin_dir () {
  sed "s|^plugin_dir = .*|plugin_dir = $1|" "$CONF" > "$CONF.new" &&
    mv "$CONF.new" "$CONF"
}

# ---- valid -------------------------------------------------------------------------------

write_config -- "a port=2525" "b port=2526"
check_config
expect_eq "valid file: exit 0" 0 "$st"
says "valid file: says so" "$CONF" valid

write_config "delivery_mode = queue" "selector = balanced" \
  "timezone = UTC" "sender = robot@example.test" -- \
  "a port=2525 tls=none transport=smtp connect_timeout=5 timeout=10"
check_config
expect_eq "valid file with every key: exit 0" 0 "$st"

# ---- bad values -----------------------------------------------------------------------------

write_config -- "a port=x"
check_config
expect_eq "bad port: exit 78" 78 "$st"
says "bad port: names file, group and key" "$CONF" "[server a]" port x

write_config -- "a port=70000"
check_config
expect_eq "port out of range: exit 78" 78 "$st"
says "port out of range: names file, group and key" "$CONF" "[server a]" port

write_config -- "a port=25 colour=red"
check_config
expect_eq "unknown server key: exit 78" 78 "$st"
says "unknown server key: names file, group and key" "$CONF" "[server a]" \
  colour

write_config "flavour = mint" -- "a port=25"
check_config
expect_eq "unknown main key: exit 78" 78 "$st"
says "unknown main key: names file, group and key" "$CONF" "[rampmail]" \
  flavour

write_config -- "a port=25 tls=starttls"
check_config
expect_eq "tls = starttls: valid" 0 "$st"

write_config -- "a port=25 tls=implicit"
check_config
expect_eq "tls = implicit: valid" 0 "$st"

write_config -- "a port=25 tls=sometimes"
check_config
expect_eq "tls = sometimes: refused, exit 78" 78 "$st"
says "tls = sometimes: names the key and the value" "[server a]" tls sometimes

write_config -- "a port=25 user=alice"
check_config
expect_eq "user without a password source: exit 78" 78 "$st"
says "user: names group and key" "[server a]" user password_file

write_config -- "a port=25 tls=none tls_ca_file=/etc/ssl/ca.pem"
check_config
expect_eq "tls_ca_file without TLS: exit 78" 78 "$st"
says "tls_ca_file without TLS: names group and key" "[server a]" tls_ca_file

# Refused for sending too, not only by --check-config.
write_config -- "a port=25 tls=sometimes"
message sometimes | rampmail -odi x@example.net 2>"$T/out"
expect_eq "bad tls value: sending refused with exit 78" 78 $?
expect_eq "bad tls value: nothing queued" 0 "$(queued)"

write_config -- "a port=25"
sed '/^host = /d' "$CONF" > "$CONF.new" && mv "$CONF.new" "$CONF"
check_config
expect_eq "missing host: exit 78" 78 "$st"
says "missing host: names file, group and key" "$CONF" "[server a]" host

write_config --
check_config
expect_eq "no server: exit 78" 78 "$st"
says "no server: names the file and says a server is needed" "$CONF" server

write_config -- "a port=x tls=sometimes colour=red"
check_config
expect_eq "several errors: exit 78" 78 "$st"
check "several errors: all reported together" \
  test "$(grep -c '\[server a\]' "$T/out")" -ge 3

# ---- missing file ---------------------------------------------------------------------------------

"$RAMPMAIL" -C "$T/nonexistent.conf" --check-config >"$T/out" 2>&1
expect_eq "missing config file: exit 78 (EX_CONFIG)" 78 $?
says "missing config file: named" "$T/nonexistent.conf"
message missing | "$RAMPMAIL" -C "$T/nonexistent.conf" x@example.net \
  >"$T/out" 2>&1
expect_eq "missing config file when sending: exit 78" 78 $?

# ---- plugins ----------------------------------------------------------------------------------------

write_config "selector = nosuchselector" -- "a port=25"
check_config
expect_eq "missing selector plugin: exit 78" 78 "$st"
says "missing selector plugin: names the module and the path" \
  nosuchselector "$RAMPMAIL_PLUGIN_BUILD_DIR/nosuchselector"

write_config -- "a port=25 transport=nosuchtransport"
check_config
expect_eq "missing transport plugin: exit 78" 78 "$st"
says "missing transport plugin: names the server, the module and the path" \
  "[server a]" nosuchtransport "$RAMPMAIL_PLUGIN_BUILD_DIR/nosuchtransport"

write_config "selector = smtp" -- "a port=25"
check_config
expect_eq "transport named as selector: exit 78" 78 "$st"
says "transport named as selector: says what it is" smtp transport selector

# A plugin folder with the real transport and a selector built for
# another interface version.
mkdir -p "$T/plugins"
ln -s "$RAMPMAIL_PLUGIN_BUILD_DIR/smtp.so" "$T/plugins/smtp.so"
cat > "$T/badabi.c" <<'EOF'
#include <rampmail/plugin.h>

static size_t
choose_first (const RmCandidate *cands, size_t n, GRand *rnd)
{
  (void) cands; (void) n; (void) rnd;
  return 0;
}

static const RmSelectorOps ops = { choose_first };

RM_PLUGIN_EXPORT const RmPluginInfo rampmail_plugin = {
  999, RM_PLUGIN_SELECTOR, "badabi", &ops
};
EOF
if ! command -v gcc >/dev/null 2>&1 \
   || ! glib_cflags=$(pkg-config --cflags glib-2.0 2>/dev/null); then
  echo "# skipped: wrong-ABI plugin: gcc or glib-2.0's pkg-config missing"
# shellcheck disable=SC2086 # glib_cflags is a list of flags
elif ! gcc -shared -fPIC -I"$top_srcdir/include" $glib_cflags \
       -o "$T/plugins/badabi.so" "$T/badabi.c" 2>"$T/gcc.err"; then
  check "wrong-ABI plugin: test plugin builds" false
  sed 's/^/#   /' "$T/gcc.err"
else
  write_config "selector = badabi" -- "a port=25"
  set_plugin_dir "$T/plugins"
  check_config
  expect_eq "wrong-ABI plugin: exit 78" 78 "$st"
  says "wrong-ABI plugin: names the module, its path and the version" \
    badabi "$T/plugins/badabi" 999
  message abi | rampmail -odi x@example.net >"$T/out" 2>&1
  expect_eq "wrong-ABI plugin: sending refused with exit 78" 78 $?
  expect_eq "wrong-ABI plugin: nothing queued" 0 "$(queued)"
fi

# A plugin folder without the MIME module: --check-config says so.
mkdir -p "$T/nomime"
for so in smtp balanced; do
  ln -s "$RAMPMAIL_PLUGIN_BUILD_DIR/$so.so" "$T/nomime/$so.so"
done
write_config -- "a port=25"
set_plugin_dir "$T/nomime"
check_config
expect_eq "no MIME module: exit 78" 78 "$st"
says "no MIME module: names it and its path" "MIME module" "$T/nomime/mime"

finish
