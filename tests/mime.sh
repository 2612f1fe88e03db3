#!/bin/sh
# GMime is loaded only for the messages that need it: src/mime.c opens the
# module "mime" of the plugin folder (plugins/mime.la) on first use. A
# plain ASCII message never maps libgmime; an 8-bit header field or a body
# line over 998 octets loads it and is encoded as before. Without the
# module such a message is refused with EX_UNAVAILABLE (69), a message
# naming the module's path, and nothing queued.
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"

: > "$T/aliases"
write_config "delivery_mode = queue" -- "a port=25"

ascii () { printf 'From: a@example.test\nTo: rcpt@example.net\nSubject: plain\n\nhello\n'; }
eight_bit () {
  printf 'From: Zo\303\253 H <z@example.test>\nTo: rcpt@example.net\n'
  printf 'Subject: Gr\303\274\303\237e aus K\303\266ln\n\ncaf\303\251\n'
}
long_line () {
  printf 'Subject: long\n\n'
  awk 'BEGIN { for (i = 0; i < 1200; i++) printf "x"; printf "\nend\n" }'
}
# data_of N: the queued message file of the Nth (1-based) queue entry.
data_of () { echo "$T/queue/data/$(queue_ids | sed -n "${1}p")"; }
# has_line FILE LINE: FILE (CRLF lines) has LINE.
has_line () { tr -d '\r' <"$1" | grep -q -x -F -- "$2"; }
# nothing_left: no committed entry and no file left in the queue's tmp/.
nothing_left () {
  [ "$(queued)" -eq 0 ] && [ -z "$(ls "$T/queue/tmp" 2>/dev/null)" ] &&
    [ -z "$(ls "$T/queue/data" 2>/dev/null)" ]
}

# ---- which libraries a submission maps (ld.so's LD_DEBUG=files) ----------------

# gmime_loads FILE: how often ld.so's log in FILE names libgmime.
gmime_loads () { grep -c 'file=libgmime' "$1" || :; }

ascii | LD_DEBUG=files "$RAMPMAIL" -C "$T/rampmail.conf" -odq \
  rcpt@example.net 2>"$T/ld.ascii"
st=$?
if ! grep -q 'file=libglib' "$T/ld.ascii"; then
  # A secure-execution (setgid) binary or another libc ignores LD_DEBUG.
  echo "# LD_DEBUG=files gives no output here: library loading not checked"
  expect_eq "ASCII message: exit 0" 0 "$st"
else
  expect_eq "ASCII message: exit 0" 0 "$st"
  expect_eq "ASCII message: libgmime is never loaded" 0 \
    "$(gmime_loads "$T/ld.ascii")"
  check "ASCII message: the MIME module is never loaded" \
    sh -c "! grep -q 'mime\.so' '$T/ld.ascii'"
  eight_bit | LD_DEBUG=files "$RAMPMAIL" -C "$T/rampmail.conf" -odq \
    rcpt@example.net 2>"$T/ld.8bit"
  expect_eq "8-bit header: exit 0" 0 $?
  check "8-bit header: the MIME module and libgmime are loaded" \
    sh -c "grep -q 'file=$RAMPMAIL_PLUGIN_BUILD_DIR/mime\.so' '$T/ld.8bit' &&
      grep -q 'file=libgmime' '$T/ld.8bit'"
fi

# ---- the results, as before the module ----------------------------------------

rm -rf "$T/queue"
eight_bit | rampmail -odq rcpt@example.net
expect_eq "8-bit header: queued" "0 1" "$? $(queued)"
check "8-bit Subject: UTF-8 encoded-word, as GMime wrote it when linked" \
  has_line "$(data_of 1)" 'Subject: =?UTF-8?b?R3LDvMOfZSBhdXMgS8O2bG4=?='
check "8-bit display name: encoded, the address kept" \
  has_line "$(data_of 1)" 'From: =?iso-8859-1?b?Wm/r?= H <z@example.test>'

rm -rf "$T/queue"
long_line | rampmail -odq rcpt@example.net
expect_eq "line over 998 octets: queued" "0 1" "$? $(queued)"
check "line over 998 octets: re-encoded as quoted-printable" \
  has_line "$(data_of 1)" 'Content-Transfer-Encoding: quoted-printable'
expect_eq "line over 998 octets: no line is longer now" 0 \
  "$(tr -d '\r' <"$(data_of 1)" | awk 'length > 998' | wc -l)"

# ---- a plugin folder without the module ---------------------------------------

mkdir -p "$T/plugins"
for p in smtp balanced ramp; do
  ln -s "$RAMPMAIL_PLUGIN_BUILD_DIR/$p.so" "$T/plugins/$p.so"
done
sed "s|^plugin_dir = .*|plugin_dir = $T/plugins|" "$T/rampmail.conf" \
  >"$T/nomime.conf"
rm -rf "$T/queue"

eight_bit | $VALGRIND "$RAMPMAIL" -C "$T/nomime.conf" -odq rcpt@example.net \
  >"$T/out" 2>&1
expect_eq "no MIME module, 8-bit header: exit 69 (EX_UNAVAILABLE)" 69 $?
check "no MIME module, 8-bit header: names the field, the module and its path" \
  grep -q -F "the From field has 8-bit text: the MIME module cannot be loaded from $T/plugins/mime(.la|.so)" \
  "$T/out"
sed 's/^/# /' "$T/out"
check "no MIME module, 8-bit header: nothing queued or left behind" nothing_left

long_line | $VALGRIND "$RAMPMAIL" -C "$T/nomime.conf" -odq rcpt@example.net \
  >"$T/out" 2>&1
expect_eq "no MIME module, line over 998 octets: exit 69" 69 $?
check "no MIME module, line over 998 octets: names the module's path" \
  grep -q -F "the MIME module cannot be loaded from $T/plugins/mime" "$T/out"
check "no MIME module, line over 998 octets: nothing queued or left behind" \
  nothing_left

# Through -bs: a temporary SMTP failure, so the client keeps the message.
printf 'EHLO c.example\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<rcpt@example.net>\r\nDATA\r\nSubject: caf\303\251\r\n\r\nbody\r\n.\r\nQUIT\r\n' |
  $VALGRIND "$RAMPMAIL" -C "$T/nomime.conf" -bs >"$T/bs.out" 2>&1
check "no MIME module, -bs: 451 naming the module's path" \
  grep -q "^451 .*$T/plugins/mime" "$T/bs.out"
check "no MIME module, -bs: nothing queued or left behind" nothing_left

ascii | $VALGRIND "$RAMPMAIL" -C "$T/nomime.conf" -odq rcpt@example.net
expect_eq "no MIME module, ASCII message: queued as ever" "0 1" "$? $(queued)"

finish
