#!/bin/sh
# What arrives on the wire: line ends, dots, Bcc, the added header fields,
# a large message, 8-bit bodies, NUL octets, and the queue emptied after
# delivery. The server stores the DATA bytes dot-unstuffed with CRLF kept.
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"

start_server mx
write_config -- mx
: > "$T/aliases"

# last NAME: path of the newest stored message of NAME, without extension.
last () { printf '%s/%s.mail/%04d' "$T" "$1" "$(count_mail "$1")"; }

# pyfile FILE CODE: runs CODE with the bytes of FILE in d; its exit status.
pyfile () {
  "$PY" -c "import sys; d = open(sys.argv[1], 'rb').read(); $2" "$1"
}

# ---- line ends -------------------------------------------------------------------

printf 'From: a@example.org\nTo: b@example.net\nSubject: lf\n\nline one\nline two\n' |
  rampmail -i b@example.net
expect_eq "LF input: exit 0" 0 $?
m=$(last mx)
check "LF input arrives with CRLF only" \
  pyfile "$m.eml" 'sys.exit(d.count(b"\n") != d.count(b"\r\n") or b"\r\nline two\r\n" not in d)'
check "no bare CR in the stored message" \
  pyfile "$m.eml" 'sys.exit(d.count(b"\r") != d.count(b"\r\n"))'

# ---- dots --------------------------------------------------------------------------

n=$(count_mail mx)
printf 'Subject: dots\n\nbefore\n.\n.x\n..y\nafter\n' | rampmail -i dots@example.net
expect_eq "-i with a lone dot: exit 0" 0 $?
expect_eq "-i with a lone dot: one message" $((n + 1)) "$(count_mail mx)"
m=$(last mx)
check "-i: the lone dot and the dotted lines arrive intact" \
  pyfile "$m.eml" 'sys.exit(b"\r\nbefore\r\n.\r\n.x\r\n..y\r\nafter\r\n" not in d)'
check "-i: no stray command after the dot reached the server" \
  sh -c "! grep -qi 'after' '$T/mx.log'"

n=$(count_mail mx)
printf 'Subject: enddot\n\nkept\n.\ndropped\n' | rampmail enddot@example.net
expect_eq "without -i: exit 0" 0 $?
expect_eq "without -i: one message" $((n + 1)) "$(count_mail mx)"
m=$(last mx)
check "without -i: text before the lone dot arrives" \
  pyfile "$m.eml" 'sys.exit(not d.endswith(b"\r\nkept\r\n"))'
check "without -i: text after the lone dot is not sent" \
  sh -c "! grep -q dropped '$m.eml'"

# ---- Bcc -----------------------------------------------------------------------------

printf 'To: to@example.net\nBcc: hidden@example.net\nSubject: bcc -t\n\nbody\n' |
  rampmail -t
expect_eq "Bcc with -t: exit 0" 0 $?
m=$(last mx)
check "Bcc with -t: the Bcc address is a recipient" \
  grep -q 'hidden@example.net' "$m.json"
check "Bcc with -t: no Bcc field in the message" \
  sh -c "! grep -qi '^bcc' '$m.eml'"
check "Bcc with -t: the address appears nowhere in the message" \
  sh -c "! grep -q 'hidden@example.net' '$m.eml'"

printf 'To: to@example.net\nBcc: hidden2@example.net\nResent-Bcc: hidden3@example.net\nSubject: bcc\n\nbody\n' |
  rampmail to@example.net
expect_eq "Bcc without -t: exit 0" 0 $?
m=$(last mx)
check "Bcc without -t: not a recipient" \
  sh -c "! grep -q 'hidden2@example.net' '$m.json'"
check "Bcc and Resent-Bcc without -t: removed from the message" \
  sh -c "! grep -qi -e '^bcc' -e '^resent-bcc' -e hidden '$m.eml'"

# ---- added fields ---------------------------------------------------------------------

printf 'Subject: bare\n\nno From, Date or Message-ID\n' |
  rampmail -f sender@example.org -F 'Full Name' added@example.net
expect_eq "missing fields: exit 0" 0 $?
m=$(last mx)
check "Date added" grep -q '^Date: ' "$m.eml"
check "Message-ID added" grep -qi '^Message-ID: <.*@.*>' "$m.eml"
check "From added with -F and -f" \
  grep -q '^From: .*Full Name.*<sender@example.org>' "$m.eml"
check "Date, Message-ID and From added once each" pyfile "$m.eml" '
h = d.split(b"\r\n\r\n")[0].lower().split(b"\r\n")
sys.exit(any(sum(l.startswith(f) for l in h) != 1
             for f in (b"date:", b"message-id:", b"from:")))'

printf 'From: Own <own@example.org>\nDate: Mon, 01 Jan 2024 00:00:00 +0000\nMessage-ID: <own@example.org>\nSubject: has them\n\nbody\n' |
  rampmail -f sender@example.org -F 'Full Name' kept@example.net
m=$(last mx)
check "present fields kept as they are" pyfile "$m.eml" '
sys.exit(b"From: Own <own@example.org>\r\n" not in d
         or b"Message-ID: <own@example.org>\r\n" not in d
         or d.lower().count(b"\r\nfrom:") + d.lower().startswith(b"from:") != 1)'

# ---- mbox From line, duplicates ----------------------------------------------------------

n=$(count_mail mx)
# The local part is case-sensitive (RFC 5321), the domain is not.
printf 'From someone@example.org Mon Jan  1 00:00:00 2024\nTo: dup@example.net\nSubject: mbox\n\nbody\n' |
  rampmail -t dup@example.net dup@example.net dup@EXAMPLE.NET
expect_eq "duplicates: one transaction" $((n + 1)) "$(count_mail mx)"
m=$(last mx)
check "mbox From line dropped" sh -c "! grep -q '^From someone' '$m.eml'"
check "duplicate recipients get the message once" \
  pyfile "$m.json" 'import json; r = json.loads(d)["rcpt_tos"]; sys.exit(len(r) != 1 or len({x.lower() for x in r}) != 1)'

# ---- a large message -----------------------------------------------------------------------

awk 'BEGIN { for (i = 1; i <= 85000; i++) printf "%08d abcdefghijklmnopqrstuvwxyz\n", i }' \
  > "$T/big.body"
{ printf 'Subject: big\n\n'; cat "$T/big.body"; } | rampmail -i big@example.net
expect_eq "3 MB message: exit 0" 0 $?
m=$(last mx)
"$PY" -c '
import sys
d = open(sys.argv[1], "rb").read()
body = d.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n")
open(sys.argv[2], "wb").write(body)' "$m.eml" "$T/big.got"
check "3 MB message: the body arrives intact" cmp -s "$T/big.body" "$T/big.got"

# ---- 8-bit and NUL ------------------------------------------------------------------------------

printf 'Subject: 8bit\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\ncaf\303\251\n' |
  rampmail eight@example.net
expect_eq "8-bit body: exit 0" 0 $?
m=$(last mx)
check "8-bit body: BODY=8BITMIME in MAIL FROM" \
  pyfile "$m.json" 'import json; sys.exit("BODY=8BITMIME" not in [o.upper() for o in json.loads(d)["mail_options"]])'
check "8-bit body: arrives as sent" \
  pyfile "$m.eml" 'sys.exit(b"\r\ncaf\xc3\xa9\r\n" not in d)'

printf 'Subject: ascii\n\nplain\n' | rampmail seven@example.net
m=$(last mx)
check "7-bit body: no BODY=8BITMIME" sh -c "! grep -q 8BITMIME '$m.json'"

printf 'Subject: nul\n\nab\000cd\n' | rampmail nul@example.net 2>"$T/err"
expect_eq "NUL octet: exit 0" 0 $?
check "NUL octet: reported on stderr" grep -q NUL "$T/err"
m=$(last mx)
check "NUL octet removed" pyfile "$m.eml" 'sys.exit(b"\0" in d or b"\r\nabcd\r\n" not in d)'

# ---- the queue after delivery --------------------------------------------------------------------

expect_eq "delivered entries leave queue/env" 0 "$(ls "$T/queue/env" | wc -l)"
expect_eq "delivered entries leave queue/data" 0 "$(ls "$T/queue/data" | wc -l)"
expect_eq "nothing left in queue/tmp" 0 "$(ls "$T/queue/tmp" | wc -l)"

finish
