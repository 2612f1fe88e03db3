#!/bin/sh
# The sendmail command line, through real delivery to one local server:
# the command lines real callers use, the errors a bad command line gets,
# local names, the delivery modes and the queue listing.
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"

# envelope NAME N: "sender rcpt rcpt..." of message N (1-based) that
# server NAME stored, recipients sorted; empty if there is none.
envelope () {
  f=$(printf '%s/%s.mail/%04d.json' "$T" "$1" "$2")
  [ -f "$f" ] || return 0
  "$PY" - "$f" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
print(" ".join([m["mail_from"]] + sorted(m["rcpt_tos"])))
EOF
}

# last_envelope NAME: the envelope of the newest message of NAME.
last_envelope () { envelope "$1" "$(count_mail "$1")"; }

# delivered_one NAME BEFORE: NAME got exactly one message more than BEFORE.
delivered_one () { [ "$(count_mail "$1")" -eq $(($2 + 1)) ]; }

start_server mx
write_config -- mx
printf 'webmaster: web1@example.net, web2@example.net\n' > "$T/aliases"
LOGIN=$(id -un)

# ---- the callers' command lines ---------------------------------------------

n=$(count_mail mx)
printf 'To: php@example.net\nSubject: php\n\nfrom PHP\n' | rampmail -t -i
expect_eq "PHP -t -i: exit 0" 0 $?
check "PHP -t -i: delivered" delivered_one mx "$n"
expect_eq "PHP -t -i: envelope" "$LOGIN@example.test php@example.net" \
  "$(last_envelope mx)"

n=$(count_mail mx)
printf 'To: php@example.net\nSubject: php -f\n\nfrom PHP\n' |
  rampmail -t -i -f shop@example.org
expect_eq "PHP -t -i -f: exit 0" 0 $?
check "PHP -t -i -f: delivered" delivered_one mx "$n"
expect_eq "PHP -t -i -f: envelope" "shop@example.org php@example.net" \
  "$(last_envelope mx)"

n=$(count_mail mx)
printf 'From: dev@example.org\nTo: list@example.net\nSubject: [PATCH] x\n\npatch\n' |
  rampmail -i -f dev@example.org -- list@example.net maint@example.net
expect_eq "git send-email: exit 0" 0 $?
check "git send-email: delivered once" delivered_one mx "$n"
expect_eq "git send-email: envelope" \
  "dev@example.org list@example.net maint@example.net" "$(last_envelope mx)"

n=$(count_mail mx)
printf 'From: me@example.org\nTo: friend@example.net\nSubject: mutt\n\nhi\n' |
  rampmail -oem -oi -- friend@example.net
expect_eq "mutt -oem -oi --: exit 0" 0 $?
check "mutt: delivered" delivered_one mx "$n"
expect_eq "mutt: envelope" "$LOGIN@example.test friend@example.net" \
  "$(last_envelope mx)"

n=$(count_mail mx)
printf 'Subject: Cron <root@host> run-parts\n\nreport\n' |
  rampmail -FCronDaemon -i -B8BITMIME -oem ops@example.net
expect_eq "cron: exit 0" 0 $?
check "cron: delivered" delivered_one mx "$n"
expect_eq "cron: envelope" "$LOGIN@example.test ops@example.net" \
  "$(last_envelope mx)"
f=$(printf '%s/mx.mail/%04d' "$T" "$(count_mail mx)")
check "cron: -B8BITMIME gives BODY=8BITMIME" grep -q 'BODY=8BITMIME' "$f.json"
check "cron: From uses -F" grep -q '^From: CronDaemon' "$f.eml"

n=$(count_mail mx)
message plain | rampmail plain@example.net
expect_eq "plain rcpt: exit 0" 0 $?
check "plain rcpt: delivered" delivered_one mx "$n"
expect_eq "plain rcpt: envelope" "$LOGIN@example.test plain@example.net" \
  "$(last_envelope mx)"

n=$(count_mail mx)
printf 'To: a@example.net, "B" <b@example.net>\nCc: c@example.net\nSubject: t\n\nbody\n' |
  rampmail -t
expect_eq "-t: exit 0" 0 $?
check "-t: delivered once" delivered_one mx "$n"
expect_eq "-t: envelope from To and Cc" \
  "$LOGIN@example.test a@example.net b@example.net c@example.net" \
  "$(last_envelope mx)"

# ---- command-line errors ----------------------------------------------------

n=$(count_mail mx)
message bad | rampmail -Z rcpt@example.net 2>"$T/err"
expect_eq "unknown flag: exit 64" 64 $?
check "unknown flag: named on stderr" grep -q -- '-Z' "$T/err"

message none | rampmail 2>"$T/err"
expect_eq "no recipient: exit 64" 64 $?
check "no recipient: says so on stderr" test -s "$T/err"

message malformed | rampmail 'bad address@@example.net' 2>"$T/err"
st=$?
check "malformed address: nonzero exit ($st)" test "$st" -ne 0
check "malformed address: error on stderr" test -s "$T/err"

printf 'To: x@example.net\nSubject: inject\n\nbody\n' |
  rampmail "$(printf 'victim@example.net\r\nRCPT TO:<evil@example.net>')" \
  2>"$T/err"
st=$?
check "recipient with CR LF: nonzero exit ($st)" test "$st" -ne 0
printf 'To: x@example.net\nSubject: inject\n\nbody\n' |
  rampmail "$(printf 'victim@example.net\nRCPT TO:<evil@example.net>')" \
  2>>"$T/err"
st=$?
check "recipient with LF: nonzero exit ($st)" test "$st" -ne 0
check "no injected RCPT reached the server" \
  sh -c "! grep -qi 'evil' '$T/mx.log'"
expect_eq "command-line errors: nothing delivered" "$n" "$(count_mail mx)"
expect_eq "command-line errors: nothing queued" 0 "$(queued)"

# ---- help, version, -bs -------------------------------------------------------

"$RAMPMAIL" --help > "$T/help"
expect_eq "--help: exit 0" 0 $?
for flag in '-n' '-U' '-h N' '-m' '-s' '-oem'; do
  check "--help lists ignored flag $flag" grep -q -- "$flag" "$T/help"
done
check "--help has an ignored-flags section" grep -qi 'ignored' "$T/help"

"$RAMPMAIL" --version > "$T/version"
expect_eq "--version: exit 0" 0 $?
check "--version names the program" grep -q 'rampmail' "$T/version"

# -bs: SMTP on standard input and output (Symfony Mailer's default).
n=$(count_mail mx)
printf '%s\r\n' 'EHLO app.example.com' 'MAIL FROM:<shop@example.org> BODY=8BITMIME' \
  'RCPT TO:<buyer@example.net>' 'RCPT TO:<evil@example.net> NOTIFY=NEVER' \
  'RCPT TO:<x@example.net>\rRCPT TO:<y@example.net>' 'DATA' \
  'Subject: order' '' '..starts with a dot' 'last line' '.' \
  'MAIL FROM:<a@example.org>' 'RCPT TO:<b@example.net>' 'RSET' 'DATA' \
  'BOGUS' 'QUIT' > "$T/bs.in"
timeout 20 "$RAMPMAIL" -C "$T/rampmail.conf" -bs < "$T/bs.in" > "$T/bs.out" \
  2>"$T/err"
expect_eq "-bs: exit 0" 0 $?
check "-bs: greets with 220" grep -q '^220 ' "$T/bs.out"
check "-bs: offers 8BITMIME, PIPELINING and SIZE" \
  sh -c "grep -q '^250-8BITMIME' '$T/bs.out' && grep -q '^250-PIPELINING' '$T/bs.out' && grep -q '^250 SIZE' '$T/bs.out'"
check "-bs: does not offer SMTPUTF8" sh -c "! grep -q SMTPUTF8 '$T/bs.out'"
check "-bs: RCPT with an unknown parameter refused" grep -q '^501 ' "$T/bs.out"
check "-bs: a CR inside a command line is no second command" \
  sh -c "grep -c '^553 \|^501 ' '$T/bs.out' | grep -q '^2$'"
check "-bs: the message is queued" grep -q '^250 2.0.0 queued as ' "$T/bs.out"
check "-bs: RSET forgets the envelope (DATA then 503)" grep -q '^503 ' "$T/bs.out"
check "-bs: unknown command 500" grep -q '^500 ' "$T/bs.out"
check "-bs: QUIT answered 221" grep -q '^221 ' "$T/bs.out"
check "-bs: every reply ends with CRLF" \
  sh -c "! grep -v \"\$(printf '\\r')\$\" '$T/bs.out'"
check "-bs: delivered once" delivered_one mx "$n"
expect_eq "-bs: envelope" "shop@example.org buyer@example.net" \
  "$(last_envelope mx)"
check "-bs: dot-unstuffed once" grep -q '^\.starts with a dot' \
  "$(ls "$T/mx.mail"/*.eml | tail -n 1)"
check "-bs: a Received field names rampmail and ESMTP" \
  grep -q '^Received: by .*(rampmail, from user .*) with ESMTP' \
  "$(ls "$T/mx.mail"/*.eml | tail -n 1)"
expect_eq "-bs: nothing left queued" 0 "$(queued)"

# ---- local names ----------------------------------------------------------------

n=$(count_mail mx)
printf 'Subject: cron\n\nbody\n' | rampmail root
expect_eq "bare root: exit 0" 0 $?
check "bare root: delivered" delivered_one mx "$n"
expect_eq "bare root: qualified with the domain" \
  "$LOGIN@example.test root@example.test" "$(last_envelope mx)"

n=$(count_mail mx)
printf 'Subject: alias\n\nbody\n' | rampmail webmaster
expect_eq "alias: exit 0" 0 $?
check "alias: delivered" delivered_one mx "$n"
expect_eq "alias: expanded from the aliases file" \
  "$LOGIN@example.test web1@example.net web2@example.net" "$(last_envelope mx)"

# ---- delivery modes -----------------------------------------------------------

n=$(count_mail mx)
message queued | rampmail -odq queued@example.net
expect_eq "-odq: exit 0" 0 $?
expect_eq "-odq: queued" 1 "$(queued)"
expect_eq "-odq: nothing delivered" "$n" "$(count_mail mx)"

rampmail -bp > "$T/bp"
expect_eq "-bp: exit 0" 0 $?
check "-bp lists the queued recipient" grep -q 'queued@example.net' "$T/bp"

if head -c 4 "$RAMPMAIL" | grep -q '#!'; then
  echo "# skipped: mailq by argv[0]: $RAMPMAIL is a libtool wrapper script"
else
  ln -s "$RAMPMAIL" "$T/mailq"
  "$T/mailq" -C "$T/rampmail.conf" > "$T/mailq.out"
  expect_eq "mailq: exit 0" 0 $?
  check "mailq lists the queued recipient" \
    grep -q 'queued@example.net' "$T/mailq.out"
fi

rampmail -q
expect_eq "-q: exit 0" 0 $?
check "-q: delivered the queued message" delivered_one mx "$n"
expect_eq "-q: envelope" "$LOGIN@example.test queued@example.net" \
  "$(last_envelope mx)"
expect_eq "-q: queue empty" 0 "$(queued)"
rampmail -bp > "$T/bp"
check "-bp after -q: queue empty" sh -c "! grep -q 'queued@example.net' '$T/bp'"

n=$(count_mail mx)
message background | rampmail -odb background@example.net
expect_eq "-odb: exit 0" 0 $?
i=0
while [ "$(count_mail mx)" -le "$n" ] && [ $i -lt 50 ]; do
  sleep 0.1
  i=$((i + 1))
done
check "-odb: delivered in the background" delivered_one mx "$n"
expect_eq "-odb: envelope" "$LOGIN@example.test background@example.net" \
  "$(last_envelope mx)"
i=0
while [ "$(queued)" -ne 0 ] && [ $i -lt 50 ]; do
  sleep 0.1
  i=$((i + 1))
done
expect_eq "-odb: queue empty afterwards" 0 "$(queued)"

# -odb returns at once, even when the server is slow, and the background
# delivery does not hold the caller's output open (a caller reading it
# through a pipe, as $(...) does, would wait for the delivery).
start_server slow --greeting-delay 4
wait_runner
write_config -- slow
start=$(date +%s)
out=$(message slow | rampmail -odb slow@example.net 2>&1)
st=$?
elapsed=$(($(date +%s) - start))
expect_eq "-odb with a slow server: exit 0" 0 "$st"
check "-odb with a slow server: returned at once (${elapsed}s, server greets after 4s)" \
  test "$elapsed" -le 2
i=0
while [ "$(count_mail slow)" -eq 0 ] && [ $i -lt 100 ]; do
  sleep 0.1
  i=$((i + 1))
done
expect_eq "-odb with a slow server: delivered later" 1 "$(count_mail slow)"

# A refused message is logged too (cron and PHP often drop standard
# error), and said once on standard error.
printf 'To: bob@example.net, @@bad\nSubject: refused\n\nbody\n' |
  rampmail -t 2>"$T/err"
expect_eq "refused message: exit 65" 65 $?
check "refused message: logged" \
  grep -q "message refused, not queued (uid [0-9]*): .*@@bad" \
  "$T/rampmail.log"
expect_eq "refused message: said once on standard error" 1 \
  "$(grep -c '@@bad' "$T/err")"

finish
