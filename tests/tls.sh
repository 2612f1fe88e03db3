#!/bin/sh
# TLS for the smtp transport (issue 5): STARTTLS and implicit TLS against
# tests/smtpd.py with the certificates of tests/certs.sh. A certificate
# that fails (expired, wrong name, unknown CA, fingerprint pin) sends
# nothing: the message stays queued with the reason, and `rampmail --test`
# names the failing step and exits 69. A server without STARTTLS never
# gets plaintext. Several TLS sessions run in one process (libESMTP's own
# context would crash the second, libesmtp-facts.md 1), and a TLS 1.3
# server that sends session tickets (E1) takes ten messages in a row.
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"
. "$top_srcdir/tests/certs.sh"

make_certs
C="$T/certs"
CA="$C/ca.pem"
: > "$T/aliases"

# fresh: forget the queue, the per-server state and the log.
fresh () { rm -rf "$T/queue" "$T/state" "$T/rampmail.log"; }

# tls_server NAME CERT [smtpd.py options...]: a STARTTLS server with
# $C/CERT.pem.
tls_server () {
  ts_name=$1 ts_cert=$2
  shift 2
  start_server "$ts_name" --starttls --tls-cert "$C/$ts_cert.pem" \
    --tls-key "$C/$ts_cert.key" "$@"
}

# st NAME [key=value...]: a server spec for STARTTLS to localhost, trusting
# the test CA.
st () { echo "$1 host=localhost tls=starttls tls_ca_file=$CA timeout=10 ${2:-}"; }

# no_mail NAME: NAME's log has no MAIL command (nothing was sent).
no_mail () { ! grep -q '^[0-9]* MAIL' "$T/$1.log" 2>/dev/null; }

# tls_before_mail NAME: every MAIL in NAME's log comes after a TLS line of
# the same session.
tls_before_mail () {
  awk '$2 == "TLS" { tls[$1] = 1 }
       $2 == "MAIL" { n++; if (!tls[$1]) bad = 1 }
       END { exit (bad || n == 0) }' "$T/$1.log"
}

# submit SUBJECT: one message to rcpt@example.net, delivered at once;
# stderr goes to $T/err.
submit () { message "$1" | rampmail -odi rcpt@example.net 2>"$T/err"; }

# bp_has PATTERN: `rampmail -bp` shows PATTERN.
bp_has () { rampmail -bp > "$T/bp" 2>&1; grep -q -- "$1" "$T/bp"; }

# test_server NAME: runs `rampmail --test NAME` into $T/test.out, the
# exit status into $T/test.rc.
test_server () {
  rampmail --test "$@" > "$T/test.out" 2>&1
  echo $? > "$T/test.rc"
}
test_rc () { cat "$T/test.rc"; }
test_has () { grep -q -- "$1" "$T/test.out"; }

# ---- a trusted certificate -------------------------------------------------

fresh
tls_server good good
write_config -- "$(st good)"
submit good
expect_eq "STARTTLS, valid certificate: exit 0" 0 $?
expect_eq "STARTTLS, valid certificate: delivered" 1 "$(count_mail good)"
expect_eq "STARTTLS, valid certificate: the queue is empty" 0 "$(queued)"
check "STARTTLS, valid certificate: the server saw SNI localhost" \
  grep -q '^1 TLS sni=localhost ' "$T/good.log"
check "STARTTLS, valid certificate: MAIL only inside TLS" \
  tls_before_mail good
check "STARTTLS, valid certificate: the server stored it as received over TLS" \
  grep -q '"tls": "TLS' "$T/good.mail/0001.json"

test_server good
expect_eq "--test, valid certificate: exit 0" 0 "$(test_rc)"
check "--test, valid certificate: the TLS version and cipher" \
  test_has '^TLS: TLSv1\.[23], cipher '
check "--test, valid certificate: subject, issuer, expiry, verified" \
  test_has '^certificate: subject CN=localhost, issuer CN=rampmail test CA, expires 20[0-9-]*, verified ok'
check "--test, valid certificate: the extensions" \
  test_has '^extensions: .*SIZE.*8BITMIME'
check "--test, valid certificate: good: ok" test_has '^good: ok$'
check "--test, valid certificate: no warning" \
  sh -c "! grep -q WARNING '$T/test.out'"

# The configured name is what is checked: 127.0.0.1 is in the certificate
# as an IP address (and an IP address gets no SNI).
fresh
write_config -- "good host=127.0.0.1 tls=starttls tls_ca_file=$CA timeout=10"
submit by-ip
expect_eq "STARTTLS to 127.0.0.1 (IP in the certificate): delivered" \
  2 "$(count_mail good)"
check "STARTTLS to 127.0.0.1: no SNI for an IP address" \
  grep -q '^[0-9]* TLS sni=none ' "$T/good.log"

# ---- certificates that must be refused -------------------------------------

# bad_cert CERT REASON: a STARTTLS server with CERT sends nothing.
bad_cert () {
  cert=$1 reason=$2
  fresh
  tls_server "$cert" "$cert"
  write_config -- "$(st "$cert")"
  submit "$cert"
  expect_eq "$cert certificate: exit 0 (queued)" 0 $?
  expect_eq "$cert certificate: nothing delivered" 0 "$(count_mail "$cert")"
  check "$cert certificate: no MAIL reached the server" no_mail "$cert"
  expect_eq "$cert certificate: the message stays queued" 1 "$(queued)"
  check "$cert certificate: -bp gives the TLS reason ($reason)" \
    bp_has "TLS: certificate verify failed: $reason"
  check "$cert certificate: the log gives the reason" \
    grep -q "$reason" "$T/rampmail.log"
  test_server "$cert"
  expect_eq "$cert certificate: --test exits 69" 69 "$(test_rc)"
  check "$cert certificate: --test shows the certificate step FAILED" \
    test_has "^certificate: subject .*FAILED: $reason"
  check "$cert certificate: --test summary names the failure" \
    test_has "^$cert: FAILED: .*$reason"
  check "$cert certificate: --test gives a hint" test_has "^$cert: FAILED: .*hint: "
  check "$cert certificate: still nothing sent after --test" no_mail "$cert"
  stop_server "$cert"
}

bad_cert expired 'certificate has expired'
bad_cert wrong 'hostname mismatch'
bad_cert unknown 'unable to get local issuer certificate'

# ---- a fingerprint pin -----------------------------------------------------

fresh
write_config -- "$(st good "tls_fingerprint=$(cert_fingerprint good)")"
submit pinned
expect_eq "pin that matches: delivered" 3 "$(count_mail good)"
test_server good
expect_eq "pin that matches: --test exit 0" 0 "$(test_rc)"
check "pin that matches: --test says so" test_has 'matches tls_fingerprint'

fresh
before=$(grep -c '^[0-9]* MAIL' "$T/good.log")
write_config -- "$(st good "tls_fingerprint=$(cert_fingerprint unknown)")"
submit mispinned
expect_eq "pin that does not match: exit 0 (queued)" 0 $?
expect_eq "pin that does not match: nothing delivered" 3 "$(count_mail good)"
expect_eq "pin that does not match: no MAIL reached the server" \
  "$before" "$(grep -c '^[0-9]* MAIL' "$T/good.log")"
expect_eq "pin that does not match: the message stays queued" 1 "$(queued)"
check "pin that does not match: -bp gives the reason" \
  bp_has 'does not match tls_fingerprint'
test_server good
expect_eq "pin that does not match: --test exits 69" 69 "$(test_rc)"
check "pin that does not match: --test says it" \
  test_has 'DOES NOT match tls_fingerprint'
check "pin that does not match: --test summary" test_has '^good: FAILED: '

# ---- verification turned off -----------------------------------------------

fresh
tls_server unk unknown
write_config -- "$(st unk tls_verify=no)"
submit unverified
expect_eq "tls_verify = no, unknown CA: exit 0" 0 $?
expect_eq "tls_verify = no, unknown CA: delivered" 1 "$(count_mail unk)"
check "tls_verify = no, unknown CA: over TLS" tls_before_mail unk
test_server unk
expect_eq "tls_verify = no: --test exit 0" 0 "$(test_rc)"
check "tls_verify = no: --test prints the WARNING line" \
  test_has '^WARNING: certificate verification is turned off'
check "tls_verify = no: --test still shows what failed" \
  test_has '^certificate: .*FAILED: unable to get local issuer certificate'
check "tls_verify = no: --test summary unk: ok" test_has '^unk: ok$'

# ---- no STARTTLS offered: never plaintext ----------------------------------

fresh
start_server plain
write_config -- "plain host=localhost tls=starttls tls_ca_file=$CA timeout=10"
submit stripped
expect_eq "no STARTTLS offered: exit 0 (queued)" 0 $?
expect_eq "no STARTTLS offered: nothing delivered" 0 "$(count_mail plain)"
check "no STARTTLS offered: no MAIL in plaintext" no_mail plain
check "no STARTTLS offered: the server saw EHLO" \
  grep -q '^1 EHLO' "$T/plain.log"
expect_eq "no STARTTLS offered: the message stays queued" 1 "$(queued)"
check "no STARTTLS offered: -bp gives the reason" \
  bp_has 'does not offer STARTTLS'
test_server plain
expect_eq "no STARTTLS offered: --test exits 69" 69 "$(test_rc)"
check "no STARTTLS offered: --test summary" \
  test_has '^plain: FAILED: .*STARTTLS'
check "no STARTTLS offered: still no MAIL" no_mail plain

# ---- implicit TLS (SMTPS) ----------------------------------------------------

fresh
start_server smtps --implicit-tls --tls-cert "$C/good.pem" \
  --tls-key "$C/good.key"
write_config -- "smtps host=localhost tls=implicit tls_ca_file=$CA timeout=10"
submit implicit
expect_eq "implicit TLS: exit 0" 0 $?
expect_eq "implicit TLS: delivered" 1 "$(count_mail smtps)"
expect_eq "implicit TLS: the queue is empty" 0 "$(queued)"
check "implicit TLS: TLS from the first byte, SNI localhost" \
  sh -c "head -n 1 '$T/smtps.log' | grep -q '^1 TLS sni=localhost '"
check "implicit TLS: MAIL inside TLS" tls_before_mail smtps
test_server smtps
expect_eq "implicit TLS: --test exit 0" 0 "$(test_rc)"
check "implicit TLS: --test shows TLS and the certificate" \
  test_has '^certificate: subject CN=localhost, .*verified ok'
check "implicit TLS: --test summary" test_has '^smtps: ok$'

fresh
start_server smtpsx --implicit-tls --tls-cert "$C/expired.pem" \
  --tls-key "$C/expired.key"
write_config -- "smtpsx host=localhost tls=implicit tls_ca_file=$CA timeout=10"
submit implicit-expired
expect_eq "implicit TLS, expired certificate: nothing delivered" \
  0 "$(count_mail smtpsx)"
check "implicit TLS, expired certificate: no MAIL" no_mail smtpsx
expect_eq "implicit TLS, expired certificate: stays queued" 1 "$(queued)"
check "implicit TLS, expired certificate: -bp gives the reason" \
  bp_has 'certificate has expired'

# ---- several TLS sessions in one process -------------------------------------

fresh
tls_server s1 good
tls_server s2 good
write_config "delivery_mode = queue" -- "$(st s1)" "$(st s2)"
for i in 1 2 3; do
  message "batch $i" | rampmail "batch$i@example.net"
done
expect_eq "three messages queued" 3 "$(queued)"
rampmail -q 2>"$T/err"
expect_eq "queue run over two STARTTLS servers: exit 0 (no crash)" 0 $?
expect_eq "queue run: all three delivered" \
  3 "$(($(count_mail s1) + $(count_mail s2)))"
check "queue run: both servers took some (two TLS sessions)" \
  test "$(count_mail s1)" -ge 1 -a "$(count_mail s2)" -ge 1
expect_eq "queue run: the queue is empty" 0 "$(queued)"
rampmail --test --send-to probe@example.net > "$T/test.out" 2>&1
expect_eq "--test --send-to over two STARTTLS servers: exit 0" 0 $?
expect_eq "--test --send-to: both test messages sent" 2 \
  "$(grep -c '^  test message: sent to probe@example.net' "$T/test.out")"
expect_eq "--test --send-to: both servers ok" 2 \
  "$(grep -c '^s[12]: ok$' "$T/test.out")"

# ---- TLS 1.3 session tickets after STARTTLS (libesmtp-facts.md, E1) ----------

# The server allows TLS 1.3, sends session tickets and pauses before its
# STARTTLS reply. A stall would hang a submission until the 10 s timeout:
# each of ten must finish in well under it (the loop stops at the first
# slow one).
fresh
tls_server e1 good --tls13-tickets-pause
write_config -- "e1 host=localhost tls=starttls tls_ca_file=$CA timeout=10"
slowest=0
i=0
while [ $i -lt 10 ]; do
  i=$((i + 1))
  t0=$(date +%s%N)
  message "e1 $i" | rampmail -odi "e1-$i@example.net" 2>>"$T/err"
  ms=$((($(date +%s%N) - t0) / 1000000))
  [ $ms -gt $slowest ] && slowest=$ms
  [ $ms -gt 4000 ] && break
done
expect_eq "E1 server: all ten delivered" 10 "$(count_mail e1)"
expect_eq "E1 server: the queue is empty" 0 "$(queued)"
check "E1 server: each submission took under 4 s (slowest ${slowest} ms)" \
  test "$slowest" -le 4000
# How the stall is made impossible (plugins/smtp-tls.c): TLS 1.2 only, whose
# ticket comes inside the handshake.
expect_eq "E1 server: every session negotiated TLS 1.2" 10 \
  "$(grep -c '^[0-9]* TLS .*version=TLSv1\.2 ' "$T/e1.log")"

finish
