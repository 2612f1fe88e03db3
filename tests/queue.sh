#!/bin/sh
# Queue runs: the background runner that batches a burst of submissions
# into one session per server, -odq / -bp / -q / -qIID / --delete, greeting
# 421 and the retry time of an entry, 452 for some recipients, failover on
# 4xx within one run, the backoff of a server that failed as a whole, and
# the cleaning of tmp/ around a submission whose writer is silent.
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"

: > "$T/aliases"

fresh () { rm -rf "$T/queue" "$T/state" "$T/rampmail.log"; }

log_has () { grep -q -- "$1" "$T/rampmail.log" 2>/dev/null; }
log_count () { grep -c -- "$1" "$T/rampmail.log" 2>/dev/null || :; }

# sessions NAME: how many SMTP sessions server NAME logged a command in.
sessions () {
  [ -f "$T/$1.log" ] || { echo 0; return; }
  cut -d' ' -f1 "$T/$1.log" | sort -u | wc -l
}

# rcpts NAME N: the recipients of message N of server NAME, sorted.
rcpts () {
  "$PY" - "$(printf '%s/%s.mail/%04d.json' "$T" "$1" "$2")" <<'EOF'
import json, sys
try:
    print(" ".join(sorted(json.load(open(sys.argv[1]))["rcpt_tos"])))
except OSError:
    print("(none)")
EOF
}

# all_rcpts NAME: every recipient server NAME got, one a line, sorted.
all_rcpts () {
  cat "$T/$1.mail"/*.json 2>/dev/null | "$PY" -c '
import json, sys
text = sys.stdin.read()
dec = json.JSONDecoder()
out, i = [], 0
while True:
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        break
    obj, i = dec.raw_decode(text, i)
    out.extend(obj["rcpt_tos"])
print("\n".join(sorted(out)))'
}

# envelope_field ID KEY: a key of queue/env/ID.
envelope_field () {
  sed -n "s/^$2=//p" "$T/queue/env/$1"
}

# prime NAME: gives server NAME one message today (see failures.sh).
prime () {
  write_config -- "$1"
  message prime | rampmail -odi prime@example.net
}

dead_port () {
  start_server "$1"
  stop_server "$1"
}

# ---- background mode: a burst goes out in one session per server --------------

fresh
start_server b1
start_server b2
start_server b3
write_config "delivery_mode = background" -- b1 b2 b3
i=1
bad=0
while [ $i -le 30 ]; do
  message "burst $i" | rampmail "burst$i@example.net" || bad=$((bad + 1))
  i=$((i + 1))
done
expect_eq "burst: 30 submissions exit 0" 0 "$bad"
check "burst: the runner finishes" wait_runner
expect_eq "burst: split 10/10/10" "10 10 10" \
  "$(count_mail b1) $(count_mail b2) $(count_mail b3)"
expect_eq "burst: every recipient got exactly one message" \
  "$(i=1; while [ $i -le 30 ]; do echo "burst$i@example.net"; i=$((i + 1)); done | sort)" \
  "$( (all_rcpts b1; all_rcpts b2; all_rcpts b3) | sort)"
total=$(( $(sessions b1) + $(sessions b2) + $(sessions b3) ))
echo "# burst: sessions b1=$(sessions b1) b2=$(sessions b2) b3=$(sessions b3)"
check "burst: at most 2 sessions per server (one per runner pass), <= 6 in all" \
  test "$total" -le 6 -a "$(sessions b1)" -le 2 -a "$(sessions b2)" -le 2 \
  -a "$(sessions b3)" -le 2
expect_eq "burst: the queue is empty" 0 "$(queued)"
expect_eq "burst: 30 'queued' log lines" 30 "$(log_count ': queued from=<')"
expect_eq "burst: 30 'status=sent' log lines" 30 "$(log_count 'status=sent')"

# ---- -odq, -bp, -q ------------------------------------------------------------

fresh
start_server mx
write_config -- mx
n=$(count_mail mx)
message odq | rampmail -odq -f owner@example.org listed@example.net
expect_eq "-odq: exit 0" 0 $?
sleep 0.5
expect_eq "-odq: nothing sent" "$n" "$(count_mail mx)"
expect_eq "-odq: one entry queued" 1 "$(queued)"
id=$(queue_ids)
check "-odq: logged as queued with size and nrcpt" \
  log_has "$id: queued from=<owner@example.org> size=[0-9]* nrcpt=1"
rampmail -bp > "$T/bp"
expect_eq "-bp: exit 0" 0 $?
check "-bp: lists the id" grep -q "^$id " "$T/bp"
check "-bp: lists the sender" grep -q "<owner@example.org>" "$T/bp"
check "-bp: lists the recipient" grep -q "^ *listed@example.net" "$T/bp"
check "-bp: lists the size" grep -q "^$id  *[1-9][0-9]* " "$T/bp"
ln -sf "$RAMPMAIL" "$T/mailq"
"$T/mailq" -C "$T/rampmail.conf" > "$T/mailq.out"
check "mailq: lists the same entry" grep -q "^$id " "$T/mailq.out"
rampmail -q
expect_eq "-q: exit 0" 0 $?
expect_eq "-q: delivered" $((n + 1)) "$(count_mail mx)"
expect_eq "-q: to the queued recipient" "listed@example.net" \
  "$(rcpts mx $((n + 1)))"
expect_eq "-q: the queue is empty" 0 "$(queued)"
check "-q: logged as sent with relay and delay" \
  log_has "$id: to=<listed@example.net> relay=mx\[127.0.0.1\]:[0-9]* delay=[0-9]* status=sent reply=\"250"
check "-q: logged as removed" log_has "$id: removed"
rampmail -bp > "$T/bp"
check "-bp: an empty queue says so" grep -qi "empty" "$T/bp"

# ---- -qIID and --delete ---------------------------------------------------------

n=$(count_mail mx)
message one | rampmail -odq one@example.net
message two | rampmail -odq two@example.net
message three | rampmail -odq three@example.net
set -- $(queue_ids)
id1=$1 id2=$2 id3=$3
expect_eq "three entries queued" 3 "$(queued)"
rampmail -qI"$id2"
expect_eq "-qIID: exit 0" 0 $?
expect_eq "-qIID: one message delivered" $((n + 1)) "$(count_mail mx)"
expect_eq "-qIID: that entry's" "two@example.net" "$(rcpts mx $((n + 1)))"
check "-qIID: that entry is gone" test ! -e "$T/queue/env/$id2"
check "-qIID: the others stay" test -e "$T/queue/env/$id1" -a -e "$T/queue/env/$id3"
rampmail -qI0000000000000000ffffff 2>"$T/err"
st=$?
check "-qI with an unknown id: nonzero exit ($st)" test "$st" -ne 0
rampmail --delete "$id3" > "$T/out" 2>"$T/err"
expect_eq "--delete: exit 0" 0 $?
check "--delete: says so" grep -q "$id3" "$T/out"
check "--delete: the entry is gone" \
  test ! -e "$T/queue/env/$id3" -a ! -e "$T/queue/data/$id3"
check "--delete: logged" log_has "$id3: deleted"
rampmail --delete "$id3" 2>"$T/err"
expect_eq "--delete of a missing entry: exit 66 (EX_NOINPUT)" 66 $?
rampmail -q
expect_eq "-q after --delete: only the remaining entry" $((n + 2)) \
  "$(count_mail mx)"
expect_eq "-q after --delete: it is the first one" "one@example.net" \
  "$(rcpts mx $((n + 2)))"
expect_eq "-q after --delete: the queue is empty" 0 "$(queued)"
stop_server mx

# ---- greeting 421: deferred, retry time honoured by automatic runs ------------------

fresh
start_server gr --greeting-reply '421 4.3.2 too busy, come back later'
write_config -- gr
message greet | rampmail -odi -f owner@example.org greet@example.net 2>"$T/err"
expect_eq "421 greeting: exit 0" 0 $?
expect_eq "421 greeting: stays queued" 1 "$(queued)"
gid=$(queue_ids)
check "421 greeting: logged as deferred with the reply" \
  log_has "$gid: to=<greet@example.net> relay=gr.*status=deferred reply=\".*421 4.3.2 too busy"
rampmail -bp > "$T/bp"
check "421 greeting: -bp shows the reply" grep -q "(.*421 4.3.2 too busy.*)" "$T/bp"
check "421 greeting: -bp shows attempts and the next attempt" \
  grep -q "(attempts: 1, next attempt in [0-9]*[sm])" "$T/bp"
expect_eq "421 greeting: attempts=1 in the envelope" 1 \
  "$(envelope_field "$gid" attempts)"
# A server that greets with 421 and closes logs no command: its sessions
# are counted in rampmail's log.
s=$(log_count "relay=gr\[")
# An automatic run (another submission in background mode, with a live
# server for it) must not try the deferred entry before its time.
start_server live
write_config "delivery_mode = background" -- gr live
message other | rampmail other@example.net
check "automatic run: the runner finishes" wait_runner
expect_eq "automatic run: the new message goes to the live server" 1 \
  "$(count_mail live)"
expect_eq "automatic run: ... and only it" "other@example.net" "$(rcpts live 1)"
expect_eq "automatic run: the backed-off 421 server is not contacted" "$s" \
  "$(log_count "relay=gr\[")"
expect_eq "automatic run: the deferred entry stays" "$gid" "$(queue_ids)"
expect_eq "automatic run: its attempts are unchanged" 1 \
  "$(envelope_field "$gid" attempts)"
# -q ignores both the entry's retry time and the server's backoff.
write_config -- gr
rampmail -q
expect_eq "-q: the 421 server is contacted again" $((s + 1)) \
  "$(log_count "relay=gr\[")"
expect_eq "-q: attempts=2" 2 "$(envelope_field "$gid" attempts)"
write_config -- gr live
rampmail -q
expect_eq "-q with a live server: delivered" 2 "$(count_mail live)"
expect_eq "-q with a live server: to the deferred recipient" \
  "greet@example.net" "$(rcpts live 2)"
expect_eq "-q with a live server: the queue is empty" 0 "$(queued)"
stop_server gr
stop_server live

# ---- 452 for some recipients ------------------------------------------------------------

fresh
start_server full --rcpt-reply 'b@example.net=452 4.5.3 too many recipients'
write_config -- full
message partial452 | rampmail -odi a@example.net b@example.net c@example.net \
  2>"$T/err"
expect_eq "452 for one: exit 0" 0 $?
expect_eq "452 for one: the others delivered in one message" \
  "a@example.net c@example.net" "$(rcpts full 1)"
expect_eq "452 for one: the entry stays queued" 1 "$(queued)"
pid452=$(queue_ids)
expect_eq "452 for one: only the deferred recipient stays" "b@example.net" \
  "$(sed -n 's/^recipients=//p' "$T/queue/env/$pid452" | tr -d ';')"
check "452 for one: logged as deferred" \
  log_has "to=<b@example.net> relay=full.*status=deferred reply=\"452 4.5.3"
port=$(port_of full)
stop_server full
start_server fixed --port "$port"
rampmail -q
expect_eq "452 fixed: -q exit 0" 0 $?
expect_eq "452 fixed: the rest delivered once" 1 "$(count_mail fixed)"
expect_eq "452 fixed: to the deferred recipient only" "b@example.net" \
  "$(rcpts fixed 1)"
expect_eq "452 fixed: the queue is empty" 0 "$(queued)"
rampmail -q
expect_eq "452 fixed: a second -q sends nothing more" 1 "$(count_mail fixed)"
expect_eq "452 fixed: the original server got one message in all" 1 \
  "$(count_mail full)"
stop_server fixed

# ---- failover on 4xx within one run (background) ---------------------------------------

fresh
start_server good
start_server busy --mail-reply '451 4.3.2 not now'
prime good
write_config "delivery_mode = background" -- busy good
message fo | rampmail fo@example.net
check "failover: the runner finishes" wait_runner
check "failover: the busy server was asked first" grep -q MAIL "$T/busy.log"
expect_eq "failover: delivered to the other server in the same run" \
  "fo@example.net" "$(rcpts good 2)"
expect_eq "failover: the queue is empty" 0 "$(queued)"
check "failover: logged deferred on busy" \
  log_has "to=<fo@example.net> relay=busy.*status=deferred reply=\"451 4.3.2"
check "failover: logged sent on good" \
  log_has "to=<fo@example.net> relay=good.*status=sent"
stop_server busy
stop_server good

# ---- backoff of a failing server ------------------------------------------------------------

# The 421 server is tried first (the other has one message today); it fails
# as a whole, so it is backed off, and the next automatic run sends the
# next message to the other server without trying it again.
fresh
start_server ok
start_server down --greeting-reply '421 4.3.2 shutting down'
prime ok
write_config "delivery_mode = background" -- down ok
message first | rampmail first@example.net
check "backoff: the runner finishes" wait_runner
expect_eq "backoff: the failing server was tried once" 1 \
  "$(log_count "relay=down\[")"
expect_eq "backoff: first message failed over" "first@example.net" \
  "$(rcpts ok 2)"
check "backoff: logged" log_has "server down failed"
if command -v sqlite3 >/dev/null 2>&1; then
  check "backoff: recorded in the state database" test \
    "$(sqlite3 "$T/state/state.sqlite" "select count(*) from backoff where server='down' and until > strftime('%s','now')")" -eq 1
fi
message second | rampmail second@example.net
check "backoff: the runner finishes again" wait_runner
expect_eq "backoff: second message to the other server" "second@example.net" \
  "$(rcpts ok 3)"
expect_eq "backoff: no new attempt on the failing server" 1 \
  "$(log_count "relay=down\[")"
expect_eq "backoff: the queue is empty" 0 "$(queued)"
# -q does not honour the server's backoff.
message third | rampmail -odq third@example.net
write_config -- down
rampmail -q
expect_eq "backoff: -q contacts the backed-off server" 2 \
  "$(log_count "relay=down\[")"

# Queue ids are never paths: a setgid rampmail must not probe files
# outside its queue for a caller.
touch "$T/outside"
rampmail -qI../../outside > /dev/null 2>&1
expect_eq "-qI with a path: refused (64)" 64 $?
rampmail --delete ../../outside > /dev/null 2>&1
expect_eq "--delete with a path: refused (66)" 66 $?
check "--delete with a path: the file is still there" test -f "$T/outside"

# A submission whose writer is silent for days (a long job piped into
# sendmail, or a clock set forward meanwhile): a queue run must not take
# its file in tmp/ for a crash's remains, while a file nobody holds is.
fresh
start_server sw
write_config -- sw
mkfifo "$T/slow"
rampmail -odq slow@example.net < "$T/slow" > "$T/slow.out" 2>&1 &
slow_pid=$!
exec 3> "$T/slow"
printf 'Subject: slow\n\nfirst line\n' >&3
i=0
while [ -z "$(ls "$T/queue/tmp" 2>/dev/null)" ] && [ $i -lt 100 ]; do
  sleep 0.05
  i=$((i + 1))
done
: > "$T/queue/tmp/0123456789abcdef.data"
touch -d '2 days ago' "$T/queue/tmp"/*
rampmail -q
check "slow writer: a queue run removes the abandoned tmp/ file" \
  test ! -e "$T/queue/tmp/0123456789abcdef.data"
expect_eq "slow writer: a queue run keeps the file being written" 1 \
  "$(ls "$T/queue/tmp" | wc -l)"
printf 'last line\n' >&3
exec 3>&-
wait "$slow_pid"
expect_eq "slow writer: the submission succeeds" 0 $?
expect_eq "slow writer: the message is queued" 1 "$(queued)"
check "slow writer: the message is whole" \
  grep -q "last line" "$T/queue/data/$(queue_ids)"
rampmail -q
expect_eq "slow writer: then delivered" 0 "$(queued)"
stop_server sw

# An envelope whose data file was removed by hand is a corrupt entry: a
# queue run moves it to corrupt/, and --delete removes it.
fresh
start_server nd
write_config -- nd
message nodata1 | rampmail -odq nd1@example.net
id1=$(queue_ids)
rm "$T/queue/data/$id1"
check "data file missing: -bp says so" \
  sh -c "'$RAMPMAIL' -C '$T/rampmail.conf' -bp |
         grep -q 'corrupt: its data file is missing'"
rampmail -q 2>/dev/null
check "data file missing: the queue run logs it" \
  log_has "$id1: corrupt entry moved to corrupt/: its data file is missing"
check "data file missing: the envelope is in corrupt/" \
  test -f "$T/queue/corrupt/$id1.env"
expect_eq "data file missing: the queue is empty" 0 "$(queued)"
message nodata2 | rampmail -odq nd2@example.net
id2=$(queue_ids)
rm "$T/queue/data/$id2"
rampmail --delete "$id2" > "$T/out" 2>&1
expect_eq "data file missing: --delete removes the entry (exit 0)" 0 $?
expect_eq "data file missing: --delete leaves nothing" 0 "$(queued)"
# An envelope that cannot be read is listed, not hidden.
message garbled | rampmail -odq nd3@example.net
id3=$(queue_ids)
printf 'garbage\001\n' > "$T/queue/env/$id3"
check "unreadable envelope: -bp lists it as corrupt" \
  sh -c "'$RAMPMAIL' -C '$T/rampmail.conf' -bp | grep -q '^$id3 *(corrupt: '"
stop_server nd

check "no rampmail process is left" wait_runner 5
finish
