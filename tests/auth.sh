#!/bin/sh
# SMTP AUTH for the smtp transport (issue 5): PLAIN and LOGIN over
# STARTTLS; a refused login never goes on unauthenticated (libESMTP does,
# libesmtp-facts.md 5b) and sends the message to another server; a server
# configured with a user that does not offer AUTH gets nothing; a password
# file others can read is refused; password_command works; and the
# password never shows in the log, on stderr, in -bp, --status, --test,
# the queue, the state or the process list.
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"
. "$top_srcdir/tests/certs.sh"

make_certs
C="$T/certs"
CA="$C/ca.pem"
: > "$T/aliases"
OUT="$T/out"
mkdir -p "$OUT"

# The passwords: distinctive, so that a grep finds any copy.
PW='Pw-7q3xZ-right-horse'
BAD='Pw-9k2vY-wrong-staple'
printf '%s\n' "$PW" > "$T/pw"
printf '%s\n' "$BAD" > "$T/badpw"
chmod 600 "$T/pw" "$T/badpw"

# scan_leaks: appends to $OUT/leaks every file in $T but the password
# files themselves that holds a password: the queue, the state, the log,
# the servers' logs and mail, every captured output. fresh scans before it
# deletes, so each section's queue and state are looked at.
SCAN=yes
scan_leaks () {
  [ "$SCAN" = yes ] || return 0
  grep -rlF -e "$PW" -e "$BAD" "$T" | grep -v -e "^$T/pw\$" \
    -e "^$T/badpw\$" -e "^$T/openpw\$" >> "$OUT/leaks"
}
fresh () {
  scan_leaks
  rm -rf "$T/queue" "$T/state" "$T/rampmail.log"
}

# auth_server NAME [smtpd.py options...]: STARTTLS with the valid
# certificate, AUTH as alice with $PW.
auth_server () {
  as_name=$1
  shift
  start_server "$as_name" --starttls --tls-cert "$C/good.pem" \
    --tls-key "$C/good.key" --auth "alice:$PW" "$@"
}

# spec NAME [key=value...]: STARTTLS to localhost as alice.
spec () {
  sp_name=$1
  shift
  echo "$sp_name host=localhost tls=starttls tls_ca_file=$CA timeout=10 user=alice $*"
}

no_mail () { ! grep -q '^[0-9]* MAIL' "$T/$1.log" 2>/dev/null; }
no_connection () { [ ! -s "$T/$1.log" ]; }

# n: a counter for the captured outputs in $OUT.
n=0
# run NAME ARGS...: rampmail ARGS with stdout and stderr kept in
# $OUT/NAME.out and $OUT/NAME.err; returns rampmail's status.
run () {
  r_name=$1
  shift
  rampmail "$@" > "$OUT/$r_name.out" 2> "$OUT/$r_name.err"
}
submit () {
  s_name=$1
  message "$s_name" | rampmail -odi "$s_name@example.net" \
    > "$OUT/$s_name.out" 2> "$OUT/$s_name.err"
}
out_has () { grep -q -- "$2" "$OUT/$1.out"; }
err_has () { grep -q -- "$2" "$OUT/$1.err"; }

# auth_after_tls NAME: in NAME's log every AUTH comes after TLS in its
# session.
auth_after_tls () {
  awk '$2 == "TLS" { tls[$1] = 1 }
       $2 == "AUTH" { n++; if (!tls[$1]) bad = 1 }
       END { exit (bad || n == 0) }' "$T/$1.log"
}

# ---- PLAIN and LOGIN over STARTTLS ------------------------------------------

fresh
auth_server plain --auth-mechanisms PLAIN
write_config -- "$(spec plain password_file="$T/pw")"
submit plain1
expect_eq "AUTH PLAIN: exit 0" 0 $?
expect_eq "AUTH PLAIN: delivered" 1 "$(count_mail plain)"
check "AUTH PLAIN: the server logged AUTH PLAIN, then ok alice" \
  sh -c "grep -A1 '^1 AUTH PLAIN$' '$T/plain.log' | grep -q '^1 AUTH ok alice$'"
check "AUTH PLAIN: only inside TLS" auth_after_tls plain
check "AUTH PLAIN: the message was sent as alice" \
  grep -q '"auth_user": "alice"' "$T/plain.mail/0001.json"
run plain-test --test plain
expect_eq "AUTH PLAIN: --test exit 0" 0 $?
check "AUTH PLAIN: --test says authentication: ok (PLAIN)" \
  out_has plain-test '^authentication: ok (PLAIN)$'
check "AUTH PLAIN: --test summary" out_has plain-test '^plain: ok$'

fresh
auth_server login --auth-mechanisms LOGIN
write_config -- "$(spec login password_file="$T/pw")"
submit login1
expect_eq "AUTH LOGIN: exit 0" 0 $?
expect_eq "AUTH LOGIN: delivered" 1 "$(count_mail login)"
check "AUTH LOGIN: the server logged AUTH LOGIN, then ok alice" \
  sh -c "grep -A1 '^1 AUTH LOGIN$' '$T/login.log' | grep -q '^1 AUTH ok alice$'"
check "AUTH LOGIN: only inside TLS" auth_after_tls login
run login-test --test login
expect_eq "AUTH LOGIN: --test exit 0" 0 $?
check "AUTH LOGIN: --test says authentication: ok (LOGIN)" \
  out_has login-test '^authentication: ok (LOGIN)$'

# ---- a wrong password: 535, never unauthenticated ----------------------------

# The server would take mail without AUTH (--auth-optional), as the relay
# of libesmtp-facts.md 5b did: only rampmail stops it.
fresh
auth_server badpw --auth-optional
write_config -- "$(spec badpw password_file="$T/badpw")"
submit bad1
expect_eq "wrong password: exit 0 (queued)" 0 $?
check "wrong password: the server refused the login" \
  grep -q '^1 AUTH failed alice$' "$T/badpw.log"
check "wrong password: no MAIL after the refusal" no_mail badpw
expect_eq "wrong password: nothing delivered" 0 "$(count_mail badpw)"
expect_eq "wrong password: the message stays queued" 1 "$(queued)"
run bad1-bp -bp
check "wrong password: -bp shows the 535" out_has bad1-bp '535'
check "wrong password: the log names the server and the fix" \
  grep -q 'server badpw: login refused (535.*check user and the password' \
  "$T/rampmail.log"
run bad1-status --status
check "wrong password: --status shows the server held with the reason" \
  out_has bad1-status 'held until .*login refused (535'
run bad1-test --test badpw
expect_eq "wrong password: --test exits 69" 69 $?
check "wrong password: --test shows the failed authentication" \
  out_has bad1-test '^authentication: failed: 535'
check "wrong password: --test summary with a hint" \
  out_has bad1-test '^badpw: FAILED: .*535.*hint: '
check "wrong password: still no MAIL after --test" no_mail badpw

# With another server, the message goes there in the same run. The other
# server gets one message first, so that badpw (none today) is tried
# first.
# failed_sessions NAME: how many sessions of NAME had a refused login.
failed_sessions () {
  awk '$2 == "AUTH" && $3 == "failed" { s[$1] = 1 }
       END { n = 0; for (k in s) n++; print n }' "$T/$1.log"
}
fresh
start_server other
write_config -- other
message prime | rampmail -odi prime@example.net
before=$(failed_sessions badpw)
write_config -- "$(spec badpw password_file="$T/badpw")" other
submit bad2
expect_eq "wrong password, second server: exit 0" 0 $?
expect_eq "wrong password, second server: badpw was tried first" \
  $((before + 1)) "$(failed_sessions badpw)"
check "wrong password, second server: still no MAIL to badpw" no_mail badpw
expect_eq "wrong password, second server: delivered by the other" \
  2 "$(count_mail other)"
check "wrong password, second server: the other got this message" \
  grep -q 'bad2@example.net' "$T/other.mail/0002.json"
expect_eq "wrong password, second server: the queue is empty" 0 "$(queued)"

# ---- a user, but the server offers no AUTH ----------------------------------

fresh
start_server noauth --starttls --tls-cert "$C/good.pem" --tls-key "$C/good.key"
write_config -- "$(spec noauth password_file="$T/pw")"
submit noauth1
expect_eq "no AUTH offered: exit 0 (queued)" 0 $?
check "no AUTH offered: no MAIL" no_mail noauth
expect_eq "no AUTH offered: nothing delivered" 0 "$(count_mail noauth)"
expect_eq "no AUTH offered: the message stays queued" 1 "$(queued)"
run noauth1-bp -bp
check "no AUTH offered: -bp gives the reason" \
  out_has noauth1-bp 'does not offer AUTH'
run noauth1-test --test noauth
expect_eq "no AUTH offered: --test exits 69" 69 $?
check "no AUTH offered: --test says so" \
  out_has noauth1-test '^authentication: failed: server does not offer AUTH'

# ---- a password file others can read ----------------------------------------

fresh
auth_server open
cp "$T/pw" "$T/openpw"
chmod 644 "$T/openpw"
write_config -- "$(spec open password_file="$T/openpw")"
submit open1
expect_eq "password file mode 644: exit 0 (queued)" 0 $?
check "password file mode 644: not even a connection" no_connection open
expect_eq "password file mode 644: the message stays queued" 1 "$(queued)"
check "password file mode 644: the error names the file" \
  err_has open1 "password_file $T/openpw must be .*others cannot read"
check "password file mode 644: the log names the file" \
  grep -q "password_file $T/openpw" "$T/rampmail.log"
run open1-bp -bp
check "password file mode 644: -bp names the file" \
  out_has open1-bp "$T/openpw"
run open1-test --test open
expect_eq "password file mode 644: --test exits 69" 69 $?
check "password file mode 644: --test names the file" \
  out_has open1-test "^open: FAILED: .*$T/openpw"
check "password file mode 644: still no connection" no_connection open
run open1-status --status

# ---- the password stays secret -----------------------------------------------

# A slow server keeps rampmail running while its command line and
# environment are read.
fresh
auth_server slow --greeting-delay 1.5
write_config -- "$(spec slow password_file="$T/pw")"
message slow | rampmail -odi slow@example.net > "$OUT/slow.out" \
  2> "$OUT/slow.err" &
bg=$!
i=0
: > "$OUT/proc"
while [ $i -lt 50 ] && [ -z "$(rampmail_pids)" ]; do
  sleep 0.02
  i=$((i + 1))
done
sleep 0.3
for pid in $(rampmail_pids); do
  tr '\0' ' ' < "/proc/$pid/cmdline" >> "$OUT/proc" 2>/dev/null
  echo >> "$OUT/proc"
  tr '\0' '\n' < "/proc/$pid/environ" >> "$OUT/proc" 2>/dev/null
done
ps -eo pid,args | grep -F "$T/rampmail.con[f]" > "$OUT/ps" || :
wait $bg
expect_eq "secret: the slow server got the message" 1 "$(count_mail slow)"
check "secret: rampmail's command line was captured" \
  grep -q 'rampmail' "$OUT/proc"
run slow-status --status
run slow-test --test
run slow-check --check-config

scan_leaks
check "secret: no password in the test folder, in any section" \
  test ! -s "$OUT/leaks"
[ -s "$OUT/leaks" ] && sort -u "$OUT/leaks"
check "secret: not in rampmail's process list entry" \
  sh -c "! grep -qF -e '$PW' '$OUT/ps' '$OUT/proc'"
# From here the configuration holds a password (password_command).
SCAN=no

# ---- password_command ------------------------------------------------------

fresh
auth_server cmd
write_config -- "$(spec cmd password_command=PASSWORD_COMMAND)"
sed "s|^password_command = PASSWORD_COMMAND\$|password_command = printf %s '$PW'|" \
  "$T/rampmail.conf" > "$T/conf.tmp" && mv "$T/conf.tmp" "$T/rampmail.conf"
check "password_command: in the configuration" \
  grep -q "^password_command = printf %s '$PW'\$" "$T/rampmail.conf"
submit cmd1
expect_eq "password_command: exit 0" 0 $?
expect_eq "password_command: delivered" 1 "$(count_mail cmd)"
check "password_command: logged in as alice" \
  grep -q '^1 AUTH ok alice$' "$T/cmd.log"
run cmd-test --test cmd
expect_eq "password_command: --test exit 0" 0 $?
check "password_command: --test authentication ok" \
  out_has cmd-test '^authentication: ok '

# A failing command: nothing sent, a clear error.
write_config -- "$(spec cmd password_command=false)"
submit cmd2
expect_eq "password_command fails: exit 0 (queued)" 0 $?
expect_eq "password_command fails: nothing more delivered" 1 "$(count_mail cmd)"
check "password_command fails: the error says so" \
  err_has cmd2 'password_command failed'

finish
