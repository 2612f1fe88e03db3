#!/bin/sh
# The setgid model (src/privs.h), run as an unprivileged user made for the
# test: such a user can submit, but can read neither a password file, nor
# a queue file, nor the state; and -C with the user's own configuration
# gives no access to the group's files. Needs root to make the user, the
# group and the setgid copy of the binary.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: needs root to create a test user and group"
  exit 77
fi
for tool in groupadd useradd userdel groupdel setpriv; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIP: $tool is missing"
    exit 77
  fi
done
if grep -q __asan_init "$RAMPMAIL" 2>/dev/null; then
  echo "SKIP: a sanitizer build does not run setgid (the runtime refuses)"
  exit 77
fi
if [ -h "$RAMPMAIL" ] || head -c 2 "$RAMPMAIL" | grep -q '#!'; then
  echo "SKIP: $RAMPMAIL is a wrapper script, not the binary"
  exit 77
fi

G=rmgrp$$
U=rmusr$$
priv_cleanup () {
  userdel "$U" 2>/dev/null || :
  groupdel "$G" 2>/dev/null || :
}
trap 'priv_cleanup; cleanup' EXIT
groupadd --system "$G" || exit 99
useradd --system --no-create-home --no-user-group --gid nogroup \
  --shell /usr/sbin/nologin "$U" || exit 99

# The user must be able to reach $T, not the group's files in it.
chmod 755 "$T"
start_server mx
write_config -- mx
CONF=$T/rampmail.conf
mkdir -p "$T/bin" "$T/queue" "$T/state"
cp "$RAMPMAIL" "$T/bin/rampmail"
chgrp "$G" "$T/bin/rampmail" && chmod 2755 "$T/bin/rampmail"
printf 'secret-%s\n' "$$" > "$T/server.pass"
touch "$T/rampmail.log"
chgrp "$G" "$T/queue" "$T/state" "$T/server.pass" "$T/rampmail.log" "$CONF"
chmod 2770 "$T/queue" "$T/state"
chmod 0640 "$T/server.pass" "$CONF"
chmod 0660 "$T/rampmail.log"

as_user () { setpriv --reuid="$U" --regid=nogroup --clear-groups "$@"; }

# Submitting works: the root-owned configuration keeps the group.
message www | as_user "$T/bin/rampmail" -C "$CONF" -odi www@example.net \
  2>"$T/err"
expect_eq "the unprivileged user can submit" 0 $?
expect_eq "and it is delivered" 1 "$(count_mail mx)"

# Leave one entry in the queue for the reading checks.
message queued | as_user "$T/bin/rampmail" -C "$CONF" -odq q@example.net
expect_eq "queue-only submission as the user" 0 $?
entry=$(ls "$T/queue/data" | head -n 1)
check "a queued entry exists" test -n "$entry"
check "the user cannot read a queue file" \
  sh -c "! as_user cat '$T/queue/data/$entry' 2>/dev/null"
check "the user cannot list the queue folder" \
  sh -c "! setpriv --reuid='$U' --regid=nogroup --clear-groups ls '$T/queue/data' >/dev/null 2>&1"
check "the user cannot read the password file" \
  sh -c "! setpriv --reuid='$U' --regid=nogroup --clear-groups cat '$T/server.pass' >/dev/null 2>&1"
check "the user cannot read the state" \
  sh -c "! setpriv --reuid='$U' --regid=nogroup --clear-groups cat '$T/state/state.sqlite' >/dev/null 2>&1"
check "the user cannot read the configuration" \
  sh -c "! setpriv --reuid='$U' --regid=nogroup --clear-groups cat '$CONF' >/dev/null 2>&1"

# The user's own configuration, pointing at the group's queue: the group
# is dropped first, so the queue cannot be written.
mkdir "$T/own" && chmod 755 "$T/own"
sed "s#^log_file = .*#log_file = $T/own/log#" "$CONF" > "$T/own/rampmail.conf"
chown "$U" "$T/own" "$T/own/rampmail.conf"
message own | as_user "$T/bin/rampmail" -C "$T/own/rampmail.conf" -odq \
  own@example.net 2>"$T/err"
st=$?
check "-C with the user's own configuration: refused ($st)" test "$st" -ne 0
check "... with a clear error about the queue" grep -qi 'queue' "$T/err"
expect_eq "... and nothing was delivered" 1 "$(count_mail mx)"
check "the password never appears in the log" \
  sh -c "! grep -q 'secret-$$' '$T/rampmail.log'"

finish
