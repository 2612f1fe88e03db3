#!/bin/sh
# Bounces: a 5xx for some recipients sends the sender an RFC 3464 delivery
# status notification (from the null sender, through the same servers)
# naming only the refused recipients; mail from the null sender is never
# bounced but kept in queue/failed, and a refused DSN does not bounce again.
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"

: > "$T/aliases"

fresh () { rm -rf "$T/queue" "$T/state" "$T/rampmail.log"; }
log_has () { grep -q -- "$1" "$T/rampmail.log" 2>/dev/null; }
failed_entries () { ls "$T/queue/failed" 2>/dev/null | grep -c '\.env$' || :; }


# dsn_check FILE REFUSED REPLY ACCEPTED: FILE is a multipart/report DSN
# whose per-recipient parts name REFUSED only, with REPLY as diagnostic,
# and which does not name ACCEPTED as a recipient.
dsn_check () {
  "$PY" - "$@" <<'EOF'
import email, email.policy, sys
path, refused, reply, accepted = sys.argv[1:5]
msg = email.message_from_binary_file(open(path, "rb"),
                                     policy=email.policy.compat32)
def fail(why):
    print("# DSN check: " + why)
    sys.exit(1)
if msg.get_content_type() != "multipart/report":
    fail("content type " + msg.get_content_type())
if msg.get_param("report-type") != "delivery-status":
    fail("report-type " + str(msg.get_param("report-type")))
parts = msg.get_payload()
types = [p.get_content_type() for p in parts]
if "message/delivery-status" not in types:
    fail("no message/delivery-status part: %s" % types)
ds = parts[types.index("message/delivery-status")]
# compat32 parses message/delivery-status into a list of header blocks.
blocks = ds.get_payload()
text = "\n".join(str(b) for b in blocks) if isinstance(blocks, list) else str(blocks)
finals = [l.split(":", 1)[1].strip() for l in text.splitlines()
          if l.lower().startswith("final-recipient:")]
if finals != ["rfc822;" + refused] and finals != ["rfc822; " + refused]:
    fail("Final-Recipient fields %s" % finals)
if accepted and accepted in text:
    fail("the accepted recipient is named in the status part")
if "Action: failed" not in text:
    fail("no Action: failed")
if reply not in text:
    fail("reply %r not in the status part:\n%s" % (reply, text))
if "Diagnostic-Code: smtp;" not in text.replace("smtp; ", "smtp;"):
    fail("no Diagnostic-Code: smtp;")
EOF
}

# ---- 550 for one of two recipients ---------------------------------------------

fresh
start_server mx --rcpt-reply 'nobody@example.net=550 5.1.1 no such user'
write_config -- mx
printf 'From: Sender <sender@example.org>\nTo: list@example.net\nSubject: bounce me\nMessage-ID: <orig-1@example.org>\n\nthe original body\n' |
  rampmail -odi -f sender@example.org ok@example.net nobody@example.net \
  2>"$T/err"
expect_eq "550 for one of two: exit 0" 0 $?
check "550 for one of two: the runner finishes" wait_runner
expect_eq "550 for one of two: two messages (original and DSN)" 2 \
  "$(count_mail mx)"
expect_eq "the original goes to the accepted recipient only" "ok@example.net" \
  "$(meta mx 1 rcpt_tos)"
expect_eq "the DSN is from the null sender" "<>" "$(meta mx 2 mail_from)"
expect_eq "the DSN goes to the original sender" "sender@example.org" \
  "$(meta mx 2 rcpt_tos)"
check "the DSN is a multipart/report naming only the refused recipient" \
  dsn_check "$T/mx.mail/0002.eml" nobody@example.net \
  "550 5.1.1 no such user" ok@example.net
check "the DSN has Status: 5.1.1" grep -q "^Status: 5\.1\.1" "$T/mx.mail/0002.eml"
check "the DSN carries the original's headers" \
  grep -q "orig-1@example.org" "$T/mx.mail/0002.eml"
expect_eq "550 for one of two: the queue is empty" 0 "$(queued)"
expect_eq "550 for one of two: nothing in queue/failed" 0 "$(failed_entries)"
check "the bounce is logged as ID-B1" \
  log_has "^.*[0-9A-F]\{22\}: bounce [0-9A-F]\{22\}-B1 queued"
check "the refusal is logged with status=refused and the reply" \
  log_has 'to=<nobody@example.net> relay=mx.*status=refused reply="550 5.1.1 no such user"'
check "the DSN is logged as sent to the sender" \
  log_has '-B1: to=<sender@example.org> relay=mx.*status=sent'

# The DSN is queued before the runner sends it: with -odq runs nothing goes
# out until -q, and the bounce waits in queue/env as ID-B1.
fresh
write_config "delivery_mode = queue" -- mx
printf 'Subject: queued bounce\n\nbody\n' |
  rampmail -f sender@example.org nobody@example.net 2>"$T/err"
id=$(queue_ids)
n=$(count_mail mx)
rampmail -qI"$id" 2>"$T/err"
expect_eq "-qIID with a 550: exit 0" 0 $?
wait_runner
# The runner that -q starts may already have sent the bounce; either way
# it was queued under ID-B1 and reaches the sender exactly once.
check "the bounce was queued as $id-B1" log_has "$id: bounce $id-B1 queued"
rampmail -q 2>"$T/err"
wait_runner
expect_eq "the DSN reaches the sender once" $((n + 1)) "$(count_mail mx)"
expect_eq "... from the null sender" "<>" "$(meta mx $((n + 1)) mail_from)"
expect_eq "the queue is empty" 0 "$(queued)"
stop_server mx

# ---- the null sender is never bounced ------------------------------------------------

fresh
start_server nb --rcpt-reply 'gone@example.net=550 5.1.1 gone'
write_config -- nb
printf 'Subject: null sender\n\nbody\n' |
  rampmail -odi -f '<>' gone@example.net 2>"$T/err"
expect_eq "null sender, 550 for all: exit 69" 69 $?
wait_runner
expect_eq "null sender: nothing delivered, no DSN" 0 "$(count_mail nb)"
expect_eq "null sender: nothing in the live queue" 0 "$(queued)"
expect_eq "null sender: kept in queue/failed" 1 "$(failed_entries)"
check "null sender: queue/failed names the recipient and the reply" \
  sh -c "grep -q 'gone@example.net' '$T'/queue/failed/*.env &&
         grep -q '550[ -]5\.1\.1 gone' '$T'/queue/failed/*.env"
check "null sender: queue/failed keeps the data" \
  sh -c "grep -q 'null sender' '$T'/queue/failed/*.data"
check "null sender: no bounce logged" sh -c "! grep -q 'bounce' '$T/rampmail.log'"

fresh
printf 'Subject: null sender 2\n\nbody\n' |
  rampmail -odi -f '<>' kept@example.net gone@example.net 2>"$T/err"
expect_eq "null sender, 550 for one of two: exit 0" 0 $?
wait_runner
expect_eq "null sender: the other recipient got it" "kept@example.net" \
  "$(meta nb 1 rcpt_tos)"
expect_eq "null sender: it went out with MAIL FROM:<>" "<>" "$(meta nb 1 mail_from)"
expect_eq "null sender: nothing else sent" 1 "$(count_mail nb)"
expect_eq "null sender: the refused one in queue/failed" 1 "$(failed_entries)"
check "null sender: queue/failed does not list the delivered one" \
  sh -c "! grep -q 'kept@example.net' '$T'/queue/failed/*.env"
stop_server nb

# ---- a refused DSN is not bounced again ------------------------------------------------

fresh
start_server loop --rcpt-reply 'nobody@example.net=550 5.1.1 no such user' \
  --rcpt-reply 'sender@example.org=550 5.1.1 sender gone too'
write_config -- loop
printf 'Subject: loop\n\nbody\n' |
  rampmail -odi -f sender@example.org ok@example.net nobody@example.net \
  2>"$T/err"
expect_eq "refused DSN: exit 0" 0 $?
id=$(sed -n 's/^.*\([0-9A-F]\{22\}\): queued from=.*/\1/p' "$T/rampmail.log" | head -n1)
check "refused DSN: the runner finishes" wait_runner
rampmail -q 2>"$T/err"
wait_runner
expect_eq "refused DSN: only the original was delivered" 1 "$(count_mail loop)"
expect_eq "refused DSN: nothing left in the live queue" 0 "$(queued)"
check "refused DSN: kept in queue/failed as $id-B1" \
  test -f "$T/queue/failed/$id-B1.env" -a -f "$T/queue/failed/$id-B1.data"
check "refused DSN: queue/failed has the sender and the reply" \
  sh -c "grep -q 'sender@example.org' '$T/queue/failed/$id-B1.env' &&
         grep -q '550[ -]5\.1\.1 sender gone too' '$T/queue/failed/$id-B1.env'"
check "refused DSN: no bounce of the bounce" \
  sh -c "! ls '$T/queue/env' '$T/queue/failed' | grep -q -- '-B1-B'"
check "refused DSN: the loop server got one DSN attempt only" \
  test "$(grep -c 'RCPT TO:<sender@example.org>' "$T/loop.log")" -eq 1

check "no rampmail process is left" wait_runner 5
finish
