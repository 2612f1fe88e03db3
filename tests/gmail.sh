#!/bin/sh
# The Gmail preset (issue 5) against tests/smtpd.py answering as
# smtp.gmail.com does: `preset = gmail` with host and port pointed at the
# fake server. --test shows each step; messages go out as the account
# (from = account) with the old From as Reply-To; a DKIM-signed message
# never goes through it; 101 recipients are split 100 + 1; and Gmail's
# replies about the server (534 5.7.9, 535 5.7.8, 550 5.4.5, 421 4.7.0 at
# the greeting, 454 4.7.0 on AUTH) hold or back off the server, send the
# message elsewhere or let it wait, and never bounce it.
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"
. "$top_srcdir/tests/certs.sh"

make_certs
C="$T/certs"
CA="$C/ca.pem"
: > "$T/aliases"
OUT="$T/out"
mkdir -p "$OUT"

ACCOUNT=alice@gmail.com
PW='abcd efgh ijkl mnop'
printf '%s\n' "$PW" > "$T/pw"
chmod 600 "$T/pw"

fresh () { rm -rf "$T/queue" "$T/state" "$T/rampmail.log"; }

# gmail_server NAME [smtpd.py options...]: a fake smtp.gmail.com: STARTTLS
# required before MAIL, AUTH as $ACCOUNT required.
gmail_server () {
  gs_name=$1
  shift
  start_server "$gs_name" --hostname smtp.gmail.com --starttls \
    --require-starttls --tls-cert "$C/good.pem" --tls-key "$C/good.key" \
    --auth "$ACCOUNT:$PW" "$@"
}

# gspec NAME [key=value...]: a preset = gmail server pointed at the fake,
# without the ramp (warmup.sh tests it), which the preset turns on.
gspec () {
  gp_name=$1
  shift
  echo "$gp_name preset=gmail host=localhost tls_ca_file=$CA user=$ACCOUNT password_file=$T/pw timeout=10 warmup=none $*"
}

run () {
  r_name=$1
  shift
  rampmail "$@" > "$OUT/$r_name.out" 2> "$OUT/$r_name.err"
}
out_has () { grep -q -- "$2" "$OUT/$1.out"; }

# submit NAME [rampmail options...]: a message from test@example.test to
# NAME@example.net, delivered at once.
submit () {
  s_name=$1
  shift
  message "$s_name" | rampmail -odi -f test@example.test "$@" \
    "$s_name@example.net" > "$OUT/$s_name.out" 2> "$OUT/$s_name.err"
}

mails () { grep -c '^[0-9]* MAIL' "$T/$1.log" 2>/dev/null || :; }
sessions () { awk '{ s[$1] = 1 } END { n = 0; for (k in s) n++; print n }' \
                "$T/$1.log" 2>/dev/null; }

# no_bounce: nothing refused, no DSN queued, nothing in queue/failed.
no_bounce () {
  ! grep -q 'status=refused' "$T/rampmail.log" 2>/dev/null &&
  ! queue_ids | grep -q -- '-B[0-9]*$' &&
  [ -z "$(ls "$T/queue/failed" 2>/dev/null)" ]
}

# status_says NAME PATTERN: in --status, NAME's lines match PATTERN.
status_says () {
  rampmail --status > "$OUT/status.out" 2>&1
  awk -v name="$1" '
    /^  [^ ]/ { cur = $1 }
    /^[^ ]/ { cur = "" }
    cur == name { print }' "$OUT/status.out" | grep -q -- "$2"
}

# prime NAME [N]: gives server NAME N messages today (1 by default), so
# that a server with none is the one the balanced selector tries first.
prime () {
  write_config -- "$1"
  p=0
  while [ $p -lt "${2:-1}" ]; do
    message prime | rampmail -odi prime@example.net
    p=$((p + 1))
  done
}

# tomorrow: the next local day, as --status prints it.
tomorrow () { date -d tomorrow +%Y-%m-%d; }

start_server k

# ---- the connection test ----------------------------------------------------

fresh
gmail_server g
write_config -- "$(gspec g)"
check "preset: no tls key written, the preset brings STARTTLS" \
  sh -c "! grep -q '^tls = ' '$T/rampmail.conf'"
run test-g --test g
expect_eq "--test g: exit 0" 0 $?
check "--test g: STARTTLS" out_has test-g '^STARTTLS: 220'
check "--test g: the TLS version and cipher" \
  out_has test-g '^TLS: TLSv1\.[23], cipher '
check "--test g: the certificate, verified" \
  out_has test-g '^certificate: subject CN=localhost, issuer CN=rampmail test CA, expires .*verified ok'
check "--test g: authentication: ok" out_has test-g '^authentication: ok'
check "--test g: the extensions" \
  out_has test-g '^extensions: .*SIZE.*8BITMIME.*AUTH'
check "--test g: g: ok" out_has test-g '^g: ok$'
check "--test g: the password is not shown" \
  sh -c "! grep -qF '$PW' '$OUT/test-g.out' '$OUT/test-g.err'"

run test-send --test --send-to probe@example.net g
expect_eq "--test --send-to g: exit 0" 0 $?
check "--test --send-to g: the test message went out" \
  out_has test-send '^  test message: sent to probe@example.net'
check "--test --send-to g: as the account" \
  grep -q "\"mail_from\": \"$ACCOUNT\"" "$T/g.mail/0001.json"

# ---- sent as the account ----------------------------------------------------

submit asaccount
expect_eq "from = account: exit 0" 0 $?
expect_eq "from = account: delivered" 2 "$(count_mail g)"
check "from = account: MAIL FROM:<$ACCOUNT>" \
  grep -q "^[0-9]* MAIL FROM:<$ACCOUNT>" "$T/g.log"
check "from = account: logged in as the account, over TLS" \
  grep -q "\"auth_user\": \"$ACCOUNT\"" "$T/g.mail/0002.json"
check "from = account: From: <$ACCOUNT>" \
  grep -q "^From: <$ACCOUNT>" "$T/g.mail/0002.eml"
expect_eq "from = account: one From field" 1 \
  "$(grep -ci '^From:' "$T/g.mail/0002.eml")"
check "from = account: the old From kept as Reply-To" \
  grep -q '^Reply-To: Test <test@example.test>' "$T/g.mail/0002.eml"
check "from = account: no From: Test left" \
  sh -c "! grep -q '^From: Test' '$T/g.mail/0002.eml'"

# A message with a Reply-To keeps its own. It goes with a queue run once
# the preset's min_gap (2 s) after the last message has passed.
printf 'From: Test <test@example.test>\nReply-To: <replies@example.test>\nTo: x@example.net\nSubject: own reply-to\n\nbody\n' |
  rampmail -odi -f test@example.test replyto@example.net 2>"$OUT/replyto.err"
sleep 3
rampmail -q 2>>"$OUT/replyto.err"
check "from = account: an own Reply-To is kept" \
  grep -q '^Reply-To: <replies@example.test>' "$T/g.mail/0003.eml"
expect_eq "from = account: and stays the only Reply-To" 1 \
  "$(grep -ci '^Reply-To:' "$T/g.mail/0003.eml")"

# ---- DKIM-signed: never through a server that rewrites From ------------------

dkim_message () {
  printf 'DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=sel;\n'
  printf '\th=from:to:subject; bh=YWJj; b=ZGVm\n'
  printf 'From: Test <test@example.test>\nTo: x@example.net\n'
  printf 'Subject: signed\n\nsigned body\n'
}

fresh
before=$(mails g)
write_config -- "$(gspec g)"
dkim_message | rampmail -odi -f test@example.test dkim@example.net \
  > "$OUT/dkim.out" 2> "$OUT/dkim.err"
expect_eq "DKIM, only g: exit 0 (queued)" 0 $?
expect_eq "DKIM, only g: nothing sent through g" "$before" "$(mails g)"
expect_eq "DKIM, only g: the message waits" 1 "$(queued)"
run dkim-bp -bp
check "DKIM, only g: -bp gives the reason (DKIM)" out_has dkim-bp 'DKIM'
run dkim-status --status
check "DKIM, only g: --status gives the reason (DKIM)" \
  out_has dkim-status 'DKIM'
check "DKIM, only g: no bounce" no_bounce

write_config -- "$(gspec g)" k
rampmail -q 2>"$OUT/dkim-q.err"
expect_eq "DKIM, g and k: still nothing through g" "$before" "$(mails g)"
expect_eq "DKIM, g and k: delivered through k (from = keep)" \
  1 "$(count_mail k)"
check "DKIM, g and k: From unchanged" \
  grep -q '^From: Test <test@example.test>' "$T/k.mail/0001.eml"
check "DKIM, g and k: the signature unchanged" \
  grep -q '^DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=sel;' \
  "$T/k.mail/0001.eml"
check "DKIM, g and k: envelope sender unchanged" \
  grep -q '"mail_from": "test@example.test"' "$T/k.mail/0001.json"
expect_eq "DKIM, g and k: the queue is empty" 0 "$(queued)"

# ---- 101 recipients: 100 + 1 ------------------------------------------------

fresh
before=$(count_mail g)
write_config -- "$(gspec g)"
rcpts=
i=1
while [ $i -le 101 ]; do
  rcpts="$rcpts r$i@example.net"
  i=$((i + 1))
done
message many | rampmail -odi -f test@example.test $rcpts 2>"$OUT/many.err"
expect_eq "101 recipients: exit 0" 0 $?
# The preset's min_gap (2 s) spaces the two transactions: the second goes
# with the next queue run.
sleep 3
rampmail -q 2>>"$OUT/many.err"
expect_eq "101 recipients: two transactions" $((before + 2)) "$(count_mail g)"
check "101 recipients: 100 then 1, each recipient once" "$PY" -c '
import json, sys
d, first = sys.argv[1], int(sys.argv[2])
sizes, seen = [], []
for n in (first + 1, first + 2):
    r = json.load(open("%s/%04d.json" % (d, n)))["rcpt_tos"]
    sizes.append(len(r))
    seen += r
want = ["r%d@example.net" % i for i in range(1, 102)]
sys.exit(sizes != [100, 1] or sorted(seen) != sorted(want))' \
  "$T/g.mail" "$before"
expect_eq "101 recipients: the queue is empty" 0 "$(queued)"

# ---- 534 5.7.9: an app password is needed ------------------------------------

fresh
gmail_server g534 --gmail-auth apppassword
prime k
k_before=$(count_mail k)
write_config -- "$(gspec g534)" k
submit app1
expect_eq "534 5.7.9: exit 0" 0 $?
check "534 5.7.9: g534 was tried and refused the login" \
  grep -q 'AUTH failed' "$T/g534.log"
expect_eq "534 5.7.9: nothing sent through g534" 0 "$(mails g534)"
expect_eq "534 5.7.9: the message went to k" $((k_before + 1)) \
  "$(count_mail k)"
expect_eq "534 5.7.9: the queue is empty" 0 "$(queued)"
check "534 5.7.9: no bounce" no_bounce
check "534 5.7.9: the log names the server, the reply and app password" \
  grep -q 'server g534: login refused (534 5.7.9 .*app password' \
  "$T/rampmail.log"
check "534 5.7.9: --status shows g534 held, with app password" \
  status_says g534 'held until .*534 5.7.9.*app password'

# Held: with g534 alone, the next message waits and g534 is not asked.
g534_sessions=$(sessions g534)
write_config -- "$(gspec g534)"
submit app2
expect_eq "534 5.7.9, g534 alone: exit 0 (waits)" 0 $?
expect_eq "534 5.7.9, g534 alone: the message waits" 1 "$(queued)"
expect_eq "534 5.7.9, g534 alone: the held server is not contacted" \
  "$g534_sessions" "$(sessions g534)"
check "534 5.7.9, g534 alone: no bounce" no_bounce
run test-534 --test g534
expect_eq "534 5.7.9: --test exits 69" 69 $?
check "534 5.7.9: --test shows Gmail's reply" \
  out_has test-534 '^authentication: failed: 534.*5\.7\.9 Application-specific password required'
check "534 5.7.9: --test hint: create an app password" \
  out_has test-534 '^g534: FAILED: .*hint: create an app password'

# ---- 535 5.7.8: bad credentials ---------------------------------------------

fresh
gmail_server g535 --gmail-auth badcredentials
prime k
k_before=$(count_mail k)
write_config -- "$(gspec g535)" k
submit creds1
expect_eq "535 5.7.8: exit 0" 0 $?
expect_eq "535 5.7.8: nothing sent through g535" 0 "$(mails g535)"
expect_eq "535 5.7.8: the message went to k" $((k_before + 1)) \
  "$(count_mail k)"
check "535 5.7.8: no bounce" no_bounce
check "535 5.7.8: --status shows g535 held, with the reply" \
  status_says g535 'held until .*535 5.7.8 Username and Password not accepted'
run test-535 --test g535
expect_eq "535 5.7.8: --test exits 69" 69 $?
check "535 5.7.8: --test shows Gmail's reply" \
  out_has test-535 '^authentication: failed: 535.*Username and Password not accepted'

# ---- 550 5.4.5: the daily sending limit --------------------------------------

fresh
gmail_server glimit --gmail-limit
prime k
k_before=$(count_mail k)
write_config -- "$(gspec glimit)" k
submit limit1
expect_eq "550 5.4.5: exit 0" 0 $?
check "550 5.4.5: glimit was asked (MAIL refused)" \
  grep -q '^[0-9]* MAIL FROM:' "$T/glimit.log"
expect_eq "550 5.4.5: nothing stored by glimit" 0 "$(count_mail glimit)"
expect_eq "550 5.4.5: the message went to k" $((k_before + 1)) \
  "$(count_mail k)"
expect_eq "550 5.4.5: the queue is empty" 0 "$(queued)"
check "550 5.4.5: no bounce" no_bounce
check "550 5.4.5: the log says the limit and the next day" \
  grep -q 'server glimit: daily sending limit reached (550 5.4.5.*held until the next day' \
  "$T/rampmail.log"
check "550 5.4.5: --status shows glimit held until the next midnight" \
  status_says glimit "held until $(tomorrow) 00:00: daily sending limit reached"

glimit_sessions=$(sessions glimit)
write_config -- "$(gspec glimit)"
submit limit2
expect_eq "550 5.4.5, glimit alone: exit 0 (waits)" 0 $?
expect_eq "550 5.4.5, glimit alone: the message waits" 1 "$(queued)"
expect_eq "550 5.4.5, glimit alone: glimit is not contacted" \
  "$glimit_sessions" "$(sessions glimit)"
check "550 5.4.5, glimit alone: no bounce" no_bounce

# ---- 421 4.7.0 at the greeting: backed off -----------------------------------

fresh
gmail_server gthrottle --gmail-throttle
prime k
k_before=$(count_mail k)
write_config -- "$(gspec gthrottle)" k
submit throttle1
expect_eq "421 4.7.0: exit 0" 0 $?
check "421 4.7.0: gthrottle greeted with Gmail's 421" \
  grep -q '^1 GREETING 421 4.7.0 Try again later, closing connection' \
  "$T/gthrottle.log"
expect_eq "421 4.7.0: the message went to k" $((k_before + 1)) \
  "$(count_mail k)"
check "421 4.7.0: no bounce" no_bounce
check "421 4.7.0: --status shows gthrottle backed off" \
  status_says gthrottle 'held until '

gthrottle_sessions=$(sessions gthrottle)
write_config -- "$(gspec gthrottle)"
submit throttle2
expect_eq "421 4.7.0, gthrottle alone: exit 0 (waits)" 0 $?
expect_eq "421 4.7.0, gthrottle alone: the message waits" 1 "$(queued)"
expect_eq "421 4.7.0, gthrottle alone: not contacted while backed off" \
  "$gthrottle_sessions" "$(sessions gthrottle)"
check "421 4.7.0, gthrottle alone: no bounce" no_bounce
gthrottle_sessions=$(sessions gthrottle)
message throttle3 | rampmail -odb -f test@example.test throttle3@example.net \
  2>"$OUT/throttle3.err"
wait_runner
expect_eq "421 4.7.0, gthrottle alone: the queue runner does not contact it" \
  "$gthrottle_sessions" "$(sessions gthrottle)"
expect_eq "421 4.7.0, gthrottle alone: both messages wait" 2 "$(queued)"
check "421 4.7.0, gthrottle alone: still no bounce" no_bounce
run test-421 --test gthrottle
expect_eq "421 4.7.0: --test exits 69" 69 $?
check "421 4.7.0: --test shows the greeting" \
  out_has test-421 '^greeting: 421 4.7.0 Try again later'

# ---- 454 4.7.0: too many login attempts --------------------------------------

# One login is let through, then every AUTH gets 454. min_gap = 0 so that
# the second message may use glogins at once.
fresh
gmail_server glogins --gmail-logins 1
prime k 2
k_before=$(count_mail k)
write_config -- "$(gspec glogins min_gap=0)" k
submit logins1
expect_eq "454 4.7.0: the first message went through glogins" \
  1 "$(count_mail glogins)"
submit logins2
expect_eq "454 4.7.0: exit 0" 0 $?
check "454 4.7.0: glogins refused the second login" \
  grep -q '^2 AUTH failed' "$T/glogins.log"
expect_eq "454 4.7.0: nothing more through glogins" 1 "$(count_mail glogins)"
expect_eq "454 4.7.0: the message went to k" $((k_before + 1)) \
  "$(count_mail k)"
check "454 4.7.0: no bounce" no_bounce
check "454 4.7.0: --status shows glogins backed off" \
  status_says glogins 'held until '
check "454 4.7.0: the log has Gmail's reply" \
  grep -q '454 4.7.0 Too many login attempts' "$T/rampmail.log"

# Backed off: the next message does not log in again (each login attempt
# would prolong Gmail's lockout).
glogins_sessions=$(sessions glogins)
write_config -- "$(gspec glogins min_gap=0)"
submit logins3
expect_eq "454 4.7.0, glogins alone: exit 0 (waits)" 0 $?
expect_eq "454 4.7.0, glogins alone: the message waits" 1 "$(queued)"
expect_eq "454 4.7.0, glogins alone: not contacted while backed off" \
  "$glogins_sessions" "$(sessions glogins)"
check "454 4.7.0, glogins alone: no bounce" no_bounce

finish
