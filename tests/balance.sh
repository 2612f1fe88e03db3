#!/bin/sh
# The balanced selector through real delivery: an exact split, the split
# under 50 concurrent submissions, and a server added later.
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"

: > "$T/aliases"

# fresh: forget the queue and the per-server counts.
fresh () { rm -rf "$T/queue" "$T/state"; }

# counts NAME...: the numbers of messages the servers got, sorted.
counts () {
  for name in "$@"; do count_mail "$name"; done | sort -n | tr '\n' ' ' |
    sed 's/ $//'
}

# ---- 30 messages, one after another ------------------------------------------------

for name in a1 a2 a3; do start_server "$name"; done
write_config -- a1 a2 a3
i=1
fails=0
while [ $i -le 30 ]; do
  message "seq $i" | rampmail -odi "rcpt$i@example.net" || fails=$((fails + 1))
  i=$((i + 1))
done
expect_eq "30 sequential: every rampmail exited 0" 0 "$fails"
expect_eq "30 sequential: split 10/10/10" "10 10 10" "$(counts a1 a2 a3)"
expect_eq "30 sequential: none queued" 0 "$(queued)"
for name in a1 a2 a3; do stop_server "$name"; done

# ---- 50 concurrent submissions ---------------------------------------------------------

fresh
for name in b1 b2 b3; do start_server "$name"; done
write_config -- b1 b2 b3
jobs_pids=""
i=1
while [ $i -le 50 ]; do
  { message "par $i" | rampmail -odi "par$i@example.net" \
      2>"$T/par$i.err"; echo $? > "$T/par$i.rc"; } &
  jobs_pids="$jobs_pids $!"
  i=$((i + 1))
done
for pid in $jobs_pids; do wait "$pid"; done
fails=0
i=1
while [ $i -le 50 ]; do
  [ "$(cat "$T/par$i.rc" 2>/dev/null)" = 0 ] || {
    fails=$((fails + 1)); cat "$T/par$i.err"; }
  i=$((i + 1))
done
expect_eq "50 concurrent: every rampmail exited 0" 0 "$fails"
expect_eq "50 concurrent: split 16/17/17 in some order" "16 17 17" \
  "$(counts b1 b2 b3)"
total=0
for name in b1 b2 b3; do total=$((total + $(count_mail "$name"))); done
expect_eq "50 concurrent: none lost" 50 "$total"
expect_eq "50 concurrent: none queued" 0 "$(queued)"
for name in b1 b2 b3; do stop_server "$name"; done

# ---- a server added later ------------------------------------------------------------------

fresh
for name in c1 c2 c3 c4; do start_server "$name"; done
write_config -- c1 c2 c3
i=1
while [ $i -le 9 ]; do
  message "before $i" | rampmail -odi "before$i@example.net"
  i=$((i + 1))
done
expect_eq "9 messages to 3 servers: 3/3/3" "3 3 3" "$(counts c1 c2 c3)"
write_config -- c1 c2 c3 c4
i=1
while [ $i -le 3 ]; do
  message "after $i" | rampmail -odi "after$i@example.net"
  i=$((i + 1))
done
expect_eq "the added server takes the next 3" 3 "$(count_mail c4)"
expect_eq "the others get none meanwhile" "3 3 3" "$(counts c1 c2 c3)"
i=1
while [ $i -le 4 ]; do
  message "even $i" | rampmail -odi "even$i@example.net"
  i=$((i + 1))
done
expect_eq "then all four rotate evenly: 4/4/4/4" "4 4 4 4" \
  "$(counts c1 c2 c3 c4)"
expect_eq "server added later: none queued" 0 "$(queued)"

finish
