#!/bin/sh
# sender_domains: a server carries only mail whose envelope sender and
# From are in its domains; mail no server may carry waits with a reason.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

start_server orgmx
start_server netmx
write_config -- "orgmx sender_domains=example.org" \
  "netmx sender_domains=example.net,mail.example.com"

send_from () {
  # send_from ENVELOPE FROM RCPT
  printf 'From: <%s>\nSubject: from %s\n\nbody\n' "$2" "$2" |
    rampmail -odi -f "$1" "$3"
}

for i in 1 2 3 4; do
  send_from "shop@example.org" "shop@example.org" "a$i@example.test"
done
expect_eq "example.org mail goes only through orgmx" "4 0" \
  "$(count_mail orgmx) $(count_mail netmx)"

send_from "news@mail.example.com" "news@mail.example.com" "b@example.test"
expect_eq "a listed domain: mail.example.com through netmx" "4 1" \
  "$(count_mail orgmx) $(count_mail netmx)"

send_from "x@sub.example.net" "x@sub.example.net" "c@example.test"
expect_eq "a subdomain of a listed domain is carried" "4 2" \
  "$(count_mail orgmx) $(count_mail netmx)"

# Envelope in one server's domains, From in the other's: SPF and DMARC
# cannot both pass anywhere, so it waits.
send_from "shop@example.org" "boss@example.net" "d@example.test"
expect_eq "envelope and From in different servers' domains: not sent" \
  "4 2" "$(count_mail orgmx) $(count_mail netmx)"
send_from "spam@elsewhere.example" "spam@elsewhere.example" "e@example.test"
expect_eq "a domain no server lists: not sent" "4 2" \
  "$(count_mail orgmx) $(count_mail netmx)"
expect_eq "both wait in the queue" 2 "$(queued)"
rampmail -bp > "$T/bp"
check "mailq says why they wait" grep -q 'sender_domains' "$T/bp"
rampmail --status > "$T/status"
check "--status says why they wait" grep -q 'sender_domains' "$T/status"
check "... naming the domain" grep -q 'elsewhere.example' "$T/status"

# The null sender (a bounce) is judged by its From alone.
printf 'From: <mailer-daemon@example.org>\nSubject: bounce\n\nbody\n' |
  rampmail -odi -f '<>' f@example.test
expect_eq "the null sender: judged by From" 5 "$(count_mail orgmx)"

finish
