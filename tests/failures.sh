#!/bin/sh
# Failure modes, most of them sharp edges of libESMTP that the product must
# handle (../shared/libesmtp-facts.md): a refused connection, 4xx and 5xx
# replies at each step, failover, and servers that hang up during or after
# DATA. Nothing accepted may be lost: a temporary failure keeps the message
# queued with exit status 0; a permanent one is bounced to the sender (a
# DSN queued as ID-B1), or kept in queue/failed for the null sender.
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"

: > "$T/aliases"

# fresh: forget the queue, the per-server counts and the log.
fresh () { rm -rf "$T/queue" "$T/state" "$T/rampmail.log"; }

# dead_port NAME: writes to $T/NAME.port a loopback port nothing listens on
# (a server's port, taken from a server that is then stopped).
dead_port () {
  start_server "$1"
  stop_server "$1"
}

failed_entries () { ls "$T/queue/failed" 2>/dev/null | grep -c '\.env$' || :; }

# log_has PATTERN: the rampmail log has a line matching PATTERN.
log_has () { grep -q -- "$1" "$T/rampmail.log" 2>/dev/null; }

# prime NAME: gives server NAME one message today, so that a server with
# none is the one the balanced selector tries first.
prime () {
  write_config -- "$1"
  message prime | rampmail -odi prime@example.net
}

# ---- refused connection, then delivery by a queue run -------------------------------

fresh
dead_port dead
write_config -- dead
message refused | rampmail -odi refused@example.net 2>"$T/err"
expect_eq "refused connection: exit 0" 0 $?
expect_eq "refused connection: the message stays queued" 1 "$(queued)"
check "refused connection: logged as deferred" log_has 'status=deferred'
start_server live
write_config -- live
rampmail -q
expect_eq "queue run: exit 0" 0 $?
expect_eq "queue run: delivered to the live server" 1 "$(count_mail live)"
check "queue run: the queued recipient got it" \
  grep -q 'refused@example.net' "$T/live.mail/0001.json"
expect_eq "queue run: the queue is empty" 0 "$(queued)"
expect_eq "queue run: queue/data is empty" 0 "$(ls "$T/queue/data" | wc -l)"

# ---- 4xx replies: the session "succeeds" though nothing was sent -------------------

# Replies are expected in the log, on stderr and in queue/failed as the
# server sent them, code first ("451 4.3.0 try later"): the enhanced code
# alone does not say what the server answered.

fresh
start_server tmprcpt --rcpt-reply 'later@example.net=451 4.3.0 try later'
write_config -- tmprcpt
message tmprcpt | rampmail -odi later@example.net 2>"$T/err"
expect_eq "451 on RCPT: exit 0" 0 $?
expect_eq "451 on RCPT: nothing stored by the server" 0 "$(count_mail tmprcpt)"
expect_eq "451 on RCPT: the message stays queued" 1 "$(queued)"
expect_eq "451 on RCPT: nothing in queue/failed" 0 "$(failed_entries)"
check "451 on RCPT: logged as deferred" log_has 'later@example.net.*deferred'
check "451 on RCPT: the log has the reply with its code" \
  log_has '451[ -]4\.3\.0 try later'

# One recipient deferred, the other accepted: only the deferred one stays
# queued, and a later queue run sends to it alone (no duplicate).
fresh
start_server halfway --rcpt-reply 'wait@example.net=451 4.3.0 try later'
write_config -- halfway
message halfway | rampmail -odi now@example.net wait@example.net 2>"$T/err"
expect_eq "451 for one of two: exit 0" 0 $?
check "451 for one of two: the other is delivered" "$PY" -c '
import json, sys
sys.exit(json.load(open(sys.argv[1]))["rcpt_tos"] != ["now@example.net"])' \
  "$T/halfway.mail/0001.json"
expect_eq "451 for one of two: the message stays queued" 1 "$(queued)"
check "451 for one of two: only the deferred recipient stays queued" \
  sh -c "grep -q 'wait@example.net' '$T'/queue/env/* &&
         ! grep -q 'now@example.net' '$T'/queue/env/*"
start_server later
write_config -- later
rampmail -q
expect_eq "451 for one of two: a queue run delivers the rest" 1 \
  "$(count_mail later)"
check "451 for one of two: ... to the deferred recipient only" "$PY" -c '
import json, sys
sys.exit(json.load(open(sys.argv[1]))["rcpt_tos"] != ["wait@example.net"])' \
  "$T/later.mail/0001.json"
expect_eq "451 for one of two: the queue is empty" 0 "$(queued)"

fresh
start_server tmpmail --mail-reply '451 4.3.0 busy'
write_config -- tmpmail
message tmpmail | rampmail -odi busy@example.net 2>"$T/err"
expect_eq "451 on MAIL: exit 0" 0 $?
expect_eq "451 on MAIL: the message stays queued" 1 "$(queued)"

fresh
start_server tmpdata --data-reply '451 4.3.0 queue full'
write_config -- tmpdata
message tmpdata | rampmail -odi full@example.net 2>"$T/err"
expect_eq "451 after DATA: exit 0" 0 $?
expect_eq "451 after DATA: the message stays queued" 1 "$(queued)"
expect_eq "451 after DATA: nothing in queue/failed" 0 "$(failed_entries)"
check "451 after DATA: logged as deferred" log_has 'full@example.net.*deferred'
check "451 after DATA: the log has the reply with its code" \
  log_has '451[ -]4\.3\.0 queue full'

# ---- 5xx replies ----------------------------------------------------------------------

# A normal sender gets a bounce: a DSN queued as ID-B1 that goes out
# through the same servers (bounce.sh checks its content). Here the server
# defers the sender's own address, so the DSN stays in queue/env where the
# test can see it. The null sender is never bounced: its refused
# recipients are kept in queue/failed.

# bounce_waits ID: the live queue holds exactly ID-B1, the bounce of ID.
bounce_waits () { [ "$(ls "$T/queue/env" 2>/dev/null)" = "$1-B1" ]; }

# first_id: the queue id of the first submission in the log.
first_id () {
  sed -n 's/^.*\([0-9A-F]\{22\}\): queued from=.*/\1/p' "$T/rampmail.log" |
    head -n1
}

fresh
start_server part --rcpt-reply 'nobody@example.net=550 5.1.1 no such user' \
  --rcpt-reply 'sender@example.org=451 4.3.0 sender mailbox busy'
write_config -- part
message partial | rampmail -odi -f sender@example.org ok@example.net \
  nobody@example.net 2>"$T/err"
expect_eq "550 for one of two: exit 0" 0 $?
wait_runner
expect_eq "550 for one of two: the other is delivered" 1 "$(count_mail part)"
check "550 for one of two: delivered to the accepted one only" "$PY" -c '
import json, sys
sys.exit(json.load(open(sys.argv[1]))["rcpt_tos"] != ["ok@example.net"])' \
  "$T/part.mail/0001.json"
id=$(first_id)
check "550 for one of two: only the bounce $id-B1 is left in the live queue" \
  bounce_waits "$id"
check "550 for one of two: the bounce goes to the sender from <>" \
  grep -q '^sender=$' "$T/queue/env/$id-B1"
check "550 for one of two: ... addressed to the sender" \
  grep -q '^recipients=sender@example.org;' "$T/queue/env/$id-B1"
check "550 for one of two: the bounce names the refused recipient" \
  grep -q 'nobody@example.net' "$T/queue/data/$id-B1"
check "550 for one of two: the bounce has the reply with its code" \
  grep -q '550[ -]5\.1\.1 no such user' "$T/queue/data/$id-B1"
expect_eq "550 for one of two: nothing in queue/failed" 0 "$(failed_entries)"
check "550 for one of two: reported on stderr" \
  grep -q 'nobody@example.net' "$T/err"
check "550 for one of two: logged as refused" \
  log_has 'nobody@example.net.*status=refused'
check "550 for one of two: the bounce is logged" log_has "$id: bounce $id-B1 queued"

fresh
start_server all --rcpt-reply 'x@example.net=550 5.1.1 no' \
  --rcpt-reply 'y@example.net=553 5.1.3 bad' \
  --rcpt-reply 'sender@example.org=451 4.3.0 sender mailbox busy'
write_config -- all
message all | rampmail -odi -f sender@example.org x@example.net y@example.net \
  2>"$T/err"
expect_eq "550 for all: exit 69 (EX_UNAVAILABLE)" 69 $?
wait_runner
expect_eq "550 for all: nothing delivered" 0 "$(count_mail all)"
id=$(first_id)
check "550 for all: only the bounce $id-B1 is left in the live queue" \
  bounce_waits "$id"
check "550 for all: the bounce names both recipients with the replies" \
  sh -c "grep -q 'x@example.net' '$T/queue/data/$id-B1' &&
         grep -q 'y@example.net' '$T/queue/data/$id-B1' &&
         grep -q '550[ -]5\.1\.1 no' '$T/queue/data/$id-B1' &&
         grep -q '553[ -]5\.1\.3 bad' '$T/queue/data/$id-B1'"
expect_eq "550 for all: nothing in queue/failed" 0 "$(failed_entries)"
check "550 for all: reported on stderr" grep -q 'x@example.net' "$T/err"
check "550 for all: stderr has the replies with their codes" \
  sh -c "grep -q '550[ -]5\.1\.1 no' '$T/err' &&
         grep -q '553[ -]5\.1\.3 bad' '$T/err'"

# The same from the null sender: no bounce, queue/failed.
fresh
message allnull | rampmail -odi -f '<>' x@example.net y@example.net 2>"$T/err"
expect_eq "550 for all, null sender: exit 69" 69 $?
wait_runner
expect_eq "550 for all, null sender: nothing delivered" 0 "$(count_mail all)"
expect_eq "550 for all, null sender: nothing left in the live queue" 0 \
  "$(queued)"
expect_eq "550 for all, null sender: kept in queue/failed" 1 "$(failed_entries)"
check "550 for all, null sender: queue/failed names both recipients" \
  sh -c "grep -q 'x@example.net' '$T'/queue/failed/*.env &&
         grep -q 'y@example.net' '$T'/queue/failed/*.env"
check "550 for all, null sender: queue/failed keeps the replies with their codes" \
  sh -c "grep -q '550[ -]5\.1\.1 no' '$T'/queue/failed/*.env &&
         grep -q '553[ -]5\.1\.3 bad' '$T'/queue/failed/*.env"
check "550 for all, null sender: queue/failed keeps the message" \
  sh -c "grep -q 'allnull' '$T'/queue/failed/*.data"
check "550 for all, null sender: no bounce" \
  sh -c "! grep -q 'bounce' '$T/rampmail.log'"

# 550 to every MAIL: the DSN (MAIL FROM:<>) is refused as well, so it is
# kept in queue/failed, and nothing bounces again.
fresh
start_server badmail --mail-reply '550 5.7.1 sender refused'
write_config -- badmail
message badmail | rampmail -odi -f sender@example.org s@example.net 2>"$T/err"
expect_eq "550 on MAIL: exit 69" 69 $?
wait_runner
rampmail -q 2>/dev/null
wait_runner
id=$(first_id)
expect_eq "550 on MAIL: nothing left in the live queue" 0 "$(queued)"
check "550 on MAIL: the refused bounce is kept in queue/failed as $id-B1" \
  test -f "$T/queue/failed/$id-B1.env"
expect_eq "550 on MAIL: only that one in queue/failed" 1 "$(failed_entries)"
check "550 on MAIL: the server saw the original and the bounce only" \
  test "$(grep -c '^[0-9]* MAIL' "$T/badmail.log")" -eq 2

# ---- failover ---------------------------------------------------------------------------------

# The working server is primed with one message, so the selector tries the
# broken one first (it has none today); the message must still leave in
# the same run.
fresh
start_server good1
dead_port down
prime good1
write_config -- down good1
message failover | rampmail -odi fo@example.net 2>"$T/err"
expect_eq "failover from a refused connection: exit 0" 0 $?
check "failover: the refusing server was tried first" \
  log_has 'fo@example.net.*relay=down.*deferred'
expect_eq "failover from a refused connection: delivered in one run" 2 \
  "$(count_mail good1)"
expect_eq "failover from a refused connection: nothing queued" 0 "$(queued)"

fresh
start_server good2
start_server busy --mail-reply '451 4.3.2 not now'
prime good2
write_config -- busy good2
message failover451 | rampmail -odi fo451@example.net 2>"$T/err"
expect_eq "failover from 451: exit 0" 0 $?
check "failover from 451: the busy server was asked" grep -q MAIL "$T/busy.log"
expect_eq "failover from 451: delivered in one run" 2 "$(count_mail good2)"
expect_eq "failover from 451: nothing queued" 0 "$(queued)"

# Some recipients delivered, others deferred: the envelope loses the
# delivered ones at once, not at the end of the run, so that a process
# killed in a later session of the run does not send them again. The
# second server stalls its greeting, so the run is still going on when the
# envelope is looked at (slowly enough for valgrind).
fresh
rm -rf "$T/half.mail" "$T/stall.mail"
start_server half --rcpt-reply 'r2@example.net=451 4.2.1 try later'
start_server stall
prime stall
stop_server stall
start_server stall --greeting-delay 8
write_config -- half stall
message halfway | rampmail -odq -f sender@example.org r1@example.net \
  r2@example.net
id=$(queue_ids)
rampmail -q 2>/dev/null &
q_pid=$!
i=0
while ! grep -q '^recipients=r2@example.net;$' "$T/queue/env/$id" 2>/dev/null \
    && [ $i -lt 60 ]; do
  sleep 0.1
  i=$((i + 1))
done
check "partly delivered: while the run goes on, the envelope has only r2" \
  sh -c "grep -q '^recipients=r2@example.net;\$' '$T/queue/env/$id' &&
         kill -0 $q_pid"
expect_eq "partly delivered: the first server took r1" 1 "$(count_mail half)"
kill "$q_pid" 2>/dev/null
kill_rampmail
wait "$q_pid" 2>/dev/null
stop_server half
stop_server stall

# A server that refuses the whole message for good (a 5xx to MAIL, or
# after DATA: its policy about this sender or content, not the
# recipient's mailbox) does not make a bounce while another server may
# take it; a 530 (login required) holds the server as a refused login does.
for refusal in "--mail-reply|550 5.7.1 sender rejected" \
    "--data-reply|554 5.7.1 message not verified" \
    "--mail-reply|530 5.7.0 Authentication required"; do
  flag=${refusal%%|*}
  reply=${refusal#*|}
  fresh
  rm -rf "$T/good3.mail" "$T/picky.mail"
  start_server good3
  start_server picky "$flag" "$reply"
  write_config -- picky good3
  for i in 1 2 3 4; do
    message "picky $i" | rampmail -odq -f sender@example.org "p$i@example.net"
  done
  rampmail -q 2>/dev/null
  expect_eq "$reply: all 4 delivered by the other server" 4 \
    "$(count_mail good3)"
  check "$reply: the refusing server was asked" grep -q MAIL "$T/picky.log"
  check "$reply: no bounce" sh -c "! grep -q bounce '$T/rampmail.log'"
  expect_eq "$reply: the queue is empty" 0 "$(queued)"
  stop_server picky
  stop_server good3
done
check "530: the server is held as for a refused login" \
  sh -c "'$RAMPMAIL' -C '$T/rampmail.conf' --status | grep -q '530'"

# Refused by every server: then it bounces.
fresh
start_server picky1 --data-reply '554 5.7.1 message not verified' \
  --rcpt-reply 'sender@example.org=451 4.3.0 sender mailbox busy'
start_server picky2 --mail-reply '550 5.7.1 sender rejected' \
  --rcpt-reply 'sender@example.org=451 4.3.0 sender mailbox busy'
write_config -- picky1 picky2
message everywhere | rampmail -odq -f sender@example.org e@example.net
rampmail -q 2>/dev/null
id=$(first_id)
check "refused by every server: bounced" log_has "$id: bounce $id-B1 queued"
check "refused by every server: both servers were asked" \
  sh -c "grep -q MAIL '$T/picky1.log' && grep -q MAIL '$T/picky2.log'"
check "refused by every server: the bounce has a server's reply" \
  grep -q '5\.7\.1' "$T/queue/data/$id-B1"
stop_server picky1
stop_server picky2

# A server without 8BITMIME: libESMTP fails a whole session that holds an
# 8-bit message, so the 7-bit ones go in a session of their own, and the
# 8-bit one goes to the same server as a 7-bit copy (quoted-printable, RFC
# 6152) in the next round of the same run. A DKIM-signed 8-bit message is
# never re-encoded: it waits for a server that offers 8BITMIME.
fresh
rm -rf "$T/seven.mail" "$T/eightok.mail"
start_server seven --no-8bitmime
write_config -- seven
printf 'Subject: eight\n\nGr\303\274\303\237e\n' |
  rampmail -odq -f sender@example.org eight@example.net
printf 'DKIM-Signature: v=1; d=example.org\nSubject: signed\n\nGr\303\274\303\237e\n' |
  rampmail -odq -f sender@example.org signed@example.net
for i in 1 2 3; do
  message "seven $i" | rampmail -odq -f sender@example.org "s$i@example.net"
done
rampmail -q 2>/dev/null
expect_eq "no 8BITMIME: the 7-bit messages and the 7-bit copy are delivered" 4 \
  "$(count_mail seven)"
eight=$(grep -l 'Subject: eight' "$T"/seven.mail/*.eml)
check "no 8BITMIME: the copy is quoted-printable" \
  grep -qi '^Content-Transfer-Encoding: quoted-printable' "$eight"
check "no 8BITMIME: ... with the text intact" grep -q 'Gr=C3=BC=C3=9Fe' "$eight"
check "no 8BITMIME: ... and only 7-bit octets" \
  sh -c "! LC_ALL=C grep -q \"\$(printf '[\\200-\\377]')\" '$eight'"
expect_eq "no 8BITMIME: the DKIM-signed one waits" 1 "$(queued)"
check "no 8BITMIME: it says why" \
  sh -c "'$RAMPMAIL' -C '$T/rampmail.conf' -bp | grep -q '8BITMIME'"
start_server eightok
write_config -- seven eightok
rampmail -q 2>/dev/null
expect_eq "no 8BITMIME: a server with 8BITMIME takes the signed one" 1 \
  "$(count_mail eightok)"
check "no 8BITMIME: ... unchanged" \
  grep -q "$(printf 'Gr\303\274\303\237e')" "$T"/eightok.mail/*.eml
expect_eq "no 8BITMIME: the queue is empty" 0 "$(queued)"
stop_server seven
stop_server eightok

# ---- the server hangs up ---------------------------------------------------------------------

# During DATA: libESMTP writes to a closed socket; without SIGPIPE ignored
# the process dies with status 141. The message (about 4 MB) is far larger
# than the socket buffers, so the final dot cannot have left: the outcome
# is a plain temporary failure, not "the server may have it".
fresh
start_server hangup --drop-in-data
write_config -- hangup
{ printf 'Subject: hangup\n\n'; i=0; while [ $i -lt 60000 ]; do
    echo "line $i of a message long enough to fill the socket buffers"
    i=$((i + 1)); done; } > "$T/long.msg"
rampmail -odi hang@example.net < "$T/long.msg" 2>"$T/err"
st=$?
expect_eq "hang-up in DATA: exit 0, not killed by SIGPIPE (141)" 0 "$st"
expect_eq "hang-up in DATA: the message stays queued" 1 "$(queued)"
check "hang-up in DATA: logged as deferred" log_has 'hang@example.net.*deferred'
check "hang-up in DATA: the server stored nothing" test "$(count_mail hangup)" -eq 0

# After the final dot the server may have taken the message (RFC 1047): it
# stays queued and no other server gets it in the same run.
fresh
start_server other
start_server dropper --drop-after-dot
prime other
write_config -- dropper other
message afterdot | rampmail -odi dot@example.net 2>"$T/err"
expect_eq "hang-up after the dot: exit 0" 0 $?
expect_eq "hang-up after the dot: the dropping server got the data" 1 \
  "$(count_mail dropper)"
expect_eq "hang-up after the dot: not sent to the other server" 1 \
  "$(count_mail other)"
expect_eq "hang-up after the dot: the message stays queued" 1 "$(queued)"
expect_eq "hang-up after the dot: nothing in queue/failed" 0 "$(failed_entries)"

finish
