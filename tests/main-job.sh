#!/bin/sh
# The main job: rampmail relays 30 real messages through three local SMTP
# servers and shows how many each one received.
# usage: tests/main-job.sh [BUILD_DIR]   (default: the source tree)
set -u
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
top_builddir=${1:-$top_srcdir}
RAMPMAIL=$top_builddir/rampmail
RAMPMAIL_PLUGIN_BUILD_DIR=$top_builddir/plugins/.libs
. "$top_srcdir/tests/lib.sh"

for name in alpha beta gamma; do
  start_server "$name"
done
# The default delivery mode: each submission commits its message and makes
# sure one background queue runner is at work, which batches the messages
# into one SMTP session per server.
write_config "delivery_mode = background" "warmup = ramp" -- alpha beta gamma

i=1
while [ $i -le 30 ]; do
  printf 'From: Web Shop <shop@example.test>\nTo: customer%02d@example.net\nSubject: Order %02d\n\nThank you for order %02d.\n' \
    $i $i $i | rampmail -t -i || echo "message $i: rampmail exited $?"
  i=$((i + 1))
done

# Wait (at most 30 s) for the background runner to empty the queue.
i=0
while [ "$(queued)" -gt 0 ] && [ $i -lt 300 ]; do
  sleep 0.1
  i=$((i + 1))
done

sessions=0
for name in alpha beta gamma; do
  sessions=$((sessions + $(grep -c ' QUIT' "$T/$name.log" 2>/dev/null || echo 0)))
done
echo "30 messages submitted in $sessions SMTP sessions; received by each local SMTP server:"
total=0
for name in alpha beta gamma; do
  n=$(count_mail "$name")
  total=$((total + n))
  echo "  $name (127.0.0.1:$(port_of "$name")): $n"
done
echo "  total: $total, still queued: $(queued)"
[ "$total" -eq 30 ] || exit 1

# A fresh server stops at its day-1 allowance (20 recipients); the rest
# waits in the queue for tomorrow's window.
start_server delta
wait_runner
write_config "delivery_mode = background" "warmup = ramp" -- delta
i=1
while [ $i -le 30 ]; do
  printf 'From: Web Shop <shop@example.test>\nTo: late%02d@example.net\nSubject: Newsletter %02d\n\nNews %02d.\n' \
    $i $i $i | rampmail -t -i || echo "message $i: rampmail exited $?"
  i=$((i + 1))
done
wait_runner
echo
echo "30 more messages to a fresh server, delta: it received $(count_mail delta);" \
  "$(queued) wait for tomorrow's allowance."
echo
rampmail --status | sed -n '1,/^Queue:/p' | sed '$d'
rampmail --status | tail -n 1
[ "$(count_mail delta)" -eq 20 ] && [ "$(queued)" -eq 10 ]
