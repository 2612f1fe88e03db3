#!/bin/sh
# Time in the queue, moved forward with faketime: the retry schedule of an
# entry (retry_min doubling up to retry_max), automatic runs that wait for
# an entry's next attempt, and expiry after queue_lifetime with a DSN
# (Status 4.4.7) to the sender.
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"

FAKETIME_BIN=/usr/bin/faketime
if [ ! -x "$FAKETIME_BIN" ]; then
  echo "SKIP: /usr/bin/faketime (Debian's faketime package) is not installed"
  exit 77
fi

: > "$T/aliases"

fresh () { rm -rf "$T/queue" "$T/state" "$T/rampmail.log"; }
log_has () { grep -q -- "$1" "$T/rampmail.log" 2>/dev/null; }

# at OFFSET ARGS...: rampmail with the clock OFFSET seconds ahead.
at () {
  offset=$1
  shift
  "$FAKETIME_BIN" -f "+$offset" "$RAMPMAIL" -C "$T/rampmail.conf" "$@"
}

# field ID KEY: a key of queue/env/ID.
field () { sed -n "s/^$2=//p" "$T/queue/env/$1"; }

# gap ID: next_attempt - last_attempt of entry ID.
gap () { echo $(( $(field "$1" next_attempt) - $(field "$1" last_attempt) )); }

# tries ADDR: RCPT commands for ADDR that server mx received.
tries () { grep -c "RCPT TO:<$1>" "$T/mx.log" 2>/dev/null || :; }


start_server mx --rcpt-reply 'stuck@example.net=451 4.3.0 try later'

# faketime must reach rampmail's clock (through LD_PRELOAD).
write_config -- mx
y_real=$(date +%Y)
y_fake=$("$FAKETIME_BIN" -f '+400d' date +%Y)
if [ "$y_fake" = "$y_real" ] && [ "$("$FAKETIME_BIN" -f '+400d' date +%j)" = "$(date +%j)" ]; then
  echo "SKIP: faketime does not change the clock here"
  exit 77
fi

# ---- the retry schedule: 2m, 4m, 8m ... ----------------------------------------------

fresh
message sched | rampmail -odq -f sender@example.org stuck@example.net
id=$(queue_ids)
rampmail -q 2>/dev/null
expect_eq "first failure: attempts=1" 1 "$(field "$id" attempts)"
expect_eq "first failure: next attempt after retry_min (120 s)" 120 "$(gap "$id")"
check "first failure: last_error has the reply" \
  sh -c "grep -q '^last_error=.*451 4.3.0 try later' '$T/queue/env/$id'"
rampmail -q 2>/dev/null
expect_eq "second failure: attempts=2" 2 "$(field "$id" attempts)"
expect_eq "second failure: the delay doubles (240 s)" 240 "$(gap "$id")"
rampmail -q 2>/dev/null
expect_eq "third failure: 480 s" 480 "$(gap "$id")"
rampmail -bp > "$T/bp"
check "-bp: attempts and next attempt" \
  grep -q "(attempts: 3, next attempt in [78]m)" "$T/bp"

# retry_max caps the delay; durations in the configuration.
fresh
write_config "retry_min = 1m" "retry_max = 3m" -- mx
message cap | rampmail -odq stuck@example.net
id=$(queue_ids)
gaps=
for k in 1 2 3 4; do
  rampmail -q 2>/dev/null
  gaps="$gaps $(gap "$id")"
done
expect_eq "retry_min = 1m, retry_max = 3m: 60 120 180 180" " 60 120 180 180" "$gaps"

fresh
write_config "retry_min = 90s" "retry_max = 2h" -- mx
message s90 | rampmail -odq stuck@example.net
id=$(queue_ids)
rampmail -q 2>/dev/null
expect_eq "retry_min = 90s: 90" 90 "$(gap "$id")"

# ---- automatic runs wait for the next attempt ----------------------------------------------

fresh
write_config "delivery_mode = background" -- mx
message auto | rampmail -odi -f sender@example.org stuck@example.net 2>/dev/null
id=$(queue_ids)
expect_eq "deferred once" 1 "$(field "$id" attempts)"
t0=$(tries stuck@example.net)
n=$(count_mail mx)
message later1 | at 60 fresh1@example.net
check "+1m: the runner finishes" wait_runner
expect_eq "+1m: the new message is delivered" $((n + 1)) "$(count_mail mx)"
expect_eq "+1m: the deferred entry is not tried before its time" "$t0" \
  "$(tries stuck@example.net)"
expect_eq "+1m: attempts unchanged" 1 "$(field "$id" attempts)"
message later2 | at 180 fresh2@example.net
check "+3m: the runner finishes" wait_runner
expect_eq "+3m: the new message is delivered" $((n + 2)) "$(count_mail mx)"
expect_eq "+3m: the deferred entry is due and tried" $((t0 + 1)) \
  "$(tries stuck@example.net)"
expect_eq "+3m: attempts=2" 2 "$(field "$id" attempts)"

# ---- expiry --------------------------------------------------------------------------------------

fresh
write_config -- mx
printf 'From: sender@example.org\nSubject: expire me\nMessage-ID: <exp-1@example.org>\n\nbody\n' |
  rampmail -odq -f sender@example.org stuck@example.net
id=$(queue_ids)
n=$(count_mail mx)
at 345600 -q 2>/dev/null
check "+4d: the runner finishes" wait_runner
expect_eq "+4d: not expired yet (default queue_lifetime 5d)" "$id" "$(queue_ids)"
check "+4d: nothing logged as expired" sh -c "! grep -q expired '$T/rampmail.log'"
at 518400 -q 2>"$T/err"
expect_eq "+6d: -q exit 0" 0 $?
check "+6d: the runner finishes" wait_runner
check "+6d: logged as expired" log_has "$id: expired"
# The bounce's serial is the entry's attempt count (bounce.h): $id-B<n>.
check "+6d: a bounce was queued as $id-B<n>" \
  log_has "$id: bounce $id-B[0-9][0-9]* queued"
check "+6d: the entry is gone" test ! -e "$T/queue/env/$id" -a ! -e "$T/queue/data/$id"
expect_eq "+6d: the queue is empty" 0 "$(queued)"
expect_eq "+6d: the DSN was delivered" $((n + 1)) "$(count_mail mx)"
dsn=$(printf '%s/mx.mail/%04d.eml' "$T" $((n + 1)))
expect_eq "the DSN is from the null sender" "<>" "$(meta mx $((n + 1)) mail_from)"
expect_eq "the DSN goes to the sender" "sender@example.org" \
  "$(meta mx $((n + 1)) rcpt_tos)"
check "the DSN is a delivery-status report" \
  grep -q "multipart/report.*delivery-status" "$dsn"
check "the DSN has Status: 4.4.7" grep -q "^Status: 4\.4\.7" "$dsn"
check "the DSN names the expired recipient" \
  grep -q "^Final-Recipient: rfc822; *stuck@example.net" "$dsn"
check "the DSN gives the last reply" grep -q "451 4.3.0 try later" "$dsn"
check "the DSN carries the original's headers" grep -q "exp-1@example.org" "$dsn"
check "nothing in queue/failed" test -z "$(ls "$T/queue/failed" 2>/dev/null)"

# A configured lifetime.
fresh
write_config "queue_lifetime = 2h" -- mx
message short | rampmail -odq -f sender@example.org stuck@example.net
id=$(queue_ids)
at 3600 -q 2>/dev/null
wait_runner
expect_eq "queue_lifetime = 2h: kept at +1h" "$id" "$(queue_ids)"
at 10800 -q 2>/dev/null
wait_runner
check "queue_lifetime = 2h: expired at +3h" log_has "$id: expired"
expect_eq "queue_lifetime = 2h: the queue is empty" 0 "$(queued)"

# An expired message from the null sender goes to queue/failed, no DSN.
fresh
write_config -- mx
message nullexp | rampmail -odq -f '<>' stuck@example.net
id=$(queue_ids)
n=$(count_mail mx)
at 518400 -q 2>/dev/null
wait_runner
check "null sender expired: logged" log_has "$id: expired"
expect_eq "null sender expired: no DSN" "$n" "$(count_mail mx)"
expect_eq "null sender expired: the queue is empty" 0 "$(queued)"
check "null sender expired: kept in queue/failed" test -f "$T/queue/failed/$id.env"

check "no rampmail process is left" wait_runner 5
finish
