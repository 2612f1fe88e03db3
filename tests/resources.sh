#!/bin/sh
# Resource failures: a corrupt queue entry is moved aside with a log line,
# not bounced; an unwritable queue directory and a full disk get a clear
# error and a sysexits code, and nothing is reported as accepted.
# The last two need root (to switch user, to mount a small tmpfs) and are
# skipped without it; if everything else was skipped the test exits 77.
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"

: > "$T/aliases"

SMALL=
my_cleanup () {
  if [ -n "$SMALL" ]; then
    umount "$SMALL" 2>/dev/null || umount -l "$SMALL" 2>/dev/null || :
  fi
  cleanup
}
trap my_cleanup EXIT

fresh () { rm -rf "$T/queue" "$T/state" "$T/rampmail.log"; }
log_has () { grep -q -- "$1" "$T/rampmail.log" 2>/dev/null; }

# small_config [extra lines]: the configuration of server mx with the queue
# on the small tmpfs.
small_config () {
  write_config "$@" -- mx
  sed "s|^queue_dir = .*|queue_dir = $T/small/queue|" "$T/rampmail.conf" \
    > "$T/conf.tmp" && mv "$T/conf.tmp" "$T/rampmail.conf"
}

start_server mx

# ---- a corrupt envelope ------------------------------------------------------------

fresh
write_config -- mx
message good | rampmail -odq -f sender@example.org good@example.net
message garbage | rampmail -odq -f sender@example.org garbage@example.net
message truncated | rampmail -odq -f sender@example.org truncated@example.net
set -- $(queue_ids)
good=$1 garbage=$2 truncated=$3
printf '\001\002 not [a key file\n=\n[[[\n' > "$T/queue/env/$garbage"
cp "$T/queue/env/$garbage" "$T/garbage.env"
printf '[envelope]\nversion=1\n' > "$T/queue/env/$truncated"
rampmail -bp > "$T/bp" 2>"$T/err"
expect_eq "-bp with corrupt entries: exit 0" 0 $?
check "-bp with corrupt entries: still lists the good one" grep -q "$good" "$T/bp"
rampmail -q 2>"$T/err"
expect_eq "-q with corrupt entries: exit 0" 0 $?
wait_runner
expect_eq "the good entry is delivered" 1 "$(count_mail mx)"
check "... to its recipient" grep -q good@example.net "$T/mx.mail/0001.json"
expect_eq "the live queue is empty" 0 "$(queued)"
check "the garbage entry is in corrupt/ (env and data)" \
  test -f "$T/queue/corrupt/$garbage.env" -a -f "$T/queue/corrupt/$garbage.data"
check "the truncated entry is in corrupt/ (env and data)" \
  test -f "$T/queue/corrupt/$truncated.env" -a -f "$T/queue/corrupt/$truncated.data"
check "corrupt/: the envelope is moved untouched" \
  cmp -s "$T/garbage.env" "$T/queue/corrupt/$garbage.env"
check "corrupt/: the data is kept" grep -q "garbage" "$T/queue/corrupt/$garbage.data"
check "data/ holds nothing of them" \
  test ! -e "$T/queue/data/$garbage" -a ! -e "$T/queue/data/$truncated"
check "logged: the garbage entry moved to corrupt/" \
  log_has "$garbage: corrupt entry moved to corrupt/"
check "logged: the truncated entry moved to corrupt/" \
  log_has "$truncated: corrupt entry moved to corrupt/"
check "nothing bounced" sh -c "! grep -q 'bounce' '$T/rampmail.log' &&
  ! grep -q 'MAIL FROM:<>' '$T/mx.log'"
check "nothing in failed/" test -z "$(ls "$T/queue/failed" 2>/dev/null)"
rampmail -q 2>"$T/err"
expect_eq "a second -q sends nothing" 1 "$(count_mail mx)"

if [ "$(id -u)" -ne 0 ]; then
  echo "# SKIP: the unwritable queue and full disk cases need root"
  check "no rampmail process is left" wait_runner 5
  finish
  exit
fi

# ---- an unwritable queue directory -----------------------------------------------------

# nobody (65534) runs rampmail with a configuration it can read, a log and
# state it can write, and a queue owned by root.
chmod 755 "$T"
mkdir -p "$T/roq" "$T/nobody-state" "$T/nobody-log"
for d in tmp data env failed corrupt; do mkdir -p "$T/roq/$d"; done
chmod -R 755 "$T/roq"
chmod 777 "$T/nobody-state" "$T/nobody-log"
as_nobody () {
  cfg=$1
  shift
  setpriv --reuid=65534 --regid=65534 --clear-groups \
    "$RAMPMAIL" -C "$cfg" "$@"
}
nobody_config () {
  cat > "$T/nobody.conf" <<EOF
[rampmail]
queue_dir = $1
state_dir = $T/nobody-state
plugin_dir = $RAMPMAIL_PLUGIN_BUILD_DIR
log_file = $T/nobody-log/rampmail.log
domain = example.test
hostname = client.example.test
aliases = $T/aliases
delivery_mode = interactive

[server mx]
host = 127.0.0.1
port = $(port_of mx)
tls = none
EOF
  chmod 644 "$T/nobody.conf" "$T/aliases"
}
if ! setpriv --reuid=65534 --regid=65534 --clear-groups true 2>/dev/null; then
  echo "# SKIP: setpriv cannot switch to uid 65534 here"
else
  n=$(count_mail mx)
  nobody_config "$T/roq"
  message ro | as_nobody "$T/nobody.conf" -odi ro@example.net 2>"$T/err"
  st=$?
  echo "# unwritable queue: exit $st: $(cat "$T/err")"
  check "unwritable queue: exit 73 or 77 (got $st)" \
    test "$st" -eq 73 -o "$st" -eq 77
  check "unwritable queue: the error names the queue" grep -q "$T/roq" "$T/err"
  check "unwritable queue: the error says why" grep -qi "permission denied" "$T/err"
  expect_eq "unwritable queue: nothing delivered" "$n" "$(count_mail mx)"
  expect_eq "unwritable queue: nothing queued" "" "$(find "$T/roq" -type f)"

  # A queue directory that does not exist and cannot be created.
  nobody_config "$T/roq/missing/queue"
  message ro2 | as_nobody "$T/nobody.conf" -odi ro2@example.net 2>"$T/err"
  st=$?
  echo "# uncreatable queue: exit $st: $(cat "$T/err")"
  check "uncreatable queue: exit 73 or 77 (got $st)" \
    test "$st" -eq 73 -o "$st" -eq 77
  check "uncreatable queue: the error names the folder" grep -q "$T/roq" "$T/err"
  expect_eq "uncreatable queue: nothing delivered" "$n" "$(count_mail mx)"
fi

# ---- a full disk -----------------------------------------------------------------------------

mkdir -p "$T/small"
if ! mount -t tmpfs -o size=1m,mode=0755 tmpfs "$T/small" 2>"$T/err"; then
  echo "# SKIP: cannot mount a tmpfs here: $(cat "$T/err")"
else
  SMALL=$T/small
  fresh
  small_config
  n=$(count_mail mx)
  "$PY" -c '
import sys
sys.stdout.write("Subject: too big\n\n")
line = "%s\n" % ("y" * 70)
for i in range(3 * 1024 * 1024 // len(line)):
    sys.stdout.write(line)' > "$T/big.msg"
  rampmail -odi big@example.net < "$T/big.msg" 2>"$T/err"
  st=$?
  echo "# full disk: exit $st: $(cat "$T/err")"
  expect_eq "full disk: exit 75 (EX_TEMPFAIL)" 75 "$st"
  check "full disk: the error says the disk is full" \
    grep -qi "no space left" "$T/err"
  expect_eq "full disk: nothing delivered" "$n" "$(count_mail mx)"
  expect_eq "full disk: nothing left in tmp/, data/ or env/" "" \
    "$(find "$T/small/queue/tmp" "$T/small/queue/data" "$T/small/queue/env" -type f)"
  check "full disk: the space is free again" \
    test "$(df -k "$T/small" | awk 'NR == 2 { print $3 }')" -lt 100
  message small | rampmail -odi small@example.net 2>"$T/err"
  expect_eq "full disk: a small message afterwards: exit 0" 0 $?
  expect_eq "full disk: ... and it is delivered" $((n + 1)) "$(count_mail mx)"
  expect_eq "full disk: ... and the queue is empty" 0 \
    "$(ls "$T/small/queue/env" | wc -l)"
  # Background mode: the caller must not be told the message was accepted.
  small_config "delivery_mode = background"
  rampmail big2@example.net < "$T/big.msg" 2>"$T/err"
  expect_eq "full disk, background mode: exit 75" 75 $?
  wait_runner
  expect_eq "full disk, background mode: nothing delivered" $((n + 1)) \
    "$(count_mail mx)"
  # -t reading recipients from the message, the usual PHP call.
  { printf 'To: php@example.net\n'; cat "$T/big.msg"; } |
    rampmail -t -i 2>"$T/err"
  expect_eq "full disk, -t -i: exit 75" 75 $?
  wait_runner
  expect_eq "full disk: nothing left in tmp/, data/ or env/ at the end" "" \
    "$(find "$T/small/queue/tmp" "$T/small/queue/data" "$T/small/queue/env" -type f)"
  fresh
  umount "$T/small" && SMALL=
fi

check "no rampmail process is left" wait_runner 5
finish
