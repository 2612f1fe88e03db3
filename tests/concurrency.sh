#!/bin/sh
# Exact quotas under concurrency: 50 rampmail processes at once submit
# 1,000 messages (one recipient each, -odi) over 3 servers allowed 20
# each today: exactly 60 are delivered, 940 stay queued, none lost, none
# sent twice. Then reservations left by processes that died: released if
# the process had not started sending, counted as used if it had.
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"

: > "$T/aliases"
start_time=$(date +%s)

# The clock: a fixed fake date when faketime is there, so that the test
# never straddles a midnight; the real clock otherwise.
FAKETIME=/usr/bin/faketime
if [ -x "$FAKETIME" ] &&
    [ "$(TZ=UTC "$FAKETIME" '2027-09-01 12:00:00' date -u +%F)" = 2027-09-01 ]
then
  run_at () {
    when=$1
    shift
    TZ=UTC "$FAKETIME" "$when" "$RAMPMAIL" -C "$T/rampmail.conf" "$@"
  }
  today () { echo "$1" | cut -d' ' -f1; }
  epoch () { date -u -d "$1" +%s; }
else
  echo "# faketime is missing: the real clock is used"
  run_at () { shift; "$RAMPMAIL" -C "$T/rampmail.conf" "$@"; }
  today () { date -u +%F; }
  epoch () { date -u +%s; }
fi

fresh () { rm -rf "$T/queue" "$T/state" "$T/rampmail.log"; }

# subjects NAME...: the Subject of every transaction the servers got,
# one a line; queued_subjects: those of the queued messages.
cat > "$T/subjects.py" <<'EOF'
import glob, os, sys
def subject(path):
    with open(path, "rb") as f:
        for line in f.read().decode("utf-8", "replace").splitlines():
            if line == "":
                break
            if line.lower().startswith("subject:"):
                return line[8:].strip()
    return "(none)"
paths = []
for arg in sys.argv[1:]:
    paths += sorted(glob.glob(arg))
for p in paths:
    print(subject(p))
EOF
subjects () {
  for name in "$@"; do echo "$T/$name.mail/*.eml"; done |
    xargs "$PY" "$T/subjects.py"
}
queued_subjects () { "$PY" "$T/subjects.py" "$T/queue/data/*"; }

# rcpt_total NAME...: recipients the servers accepted.
rcpt_total () {
  "$PY" - "$@" <<EOF
import glob, json, sys
print(sum(len(json.load(open(p))["rcpt_tos"])
          for n in sys.argv[1:]
          for p in glob.glob("$T/" + n + ".mail/*.json")))
EOF
}

# sql STATEMENT: runs one statement on the state database, prints rows.
sql () {
  "$PY" - "$T/state/state.sqlite" "$1" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute(sys.argv[2]).fetchall()
db.commit()
for row in rows:
    print(" ".join("" if v is None else str(v) for v in row))
EOF
}

# ---- 50 processes, 1000 messages, 3 servers allowed 20 each --------------------------------

NOW="2027-09-01 12:00:00"
for name in c1 c2 c3; do start_server "$name"; done
write_config "warmup = ramp" "timezone = UTC" "warmup_schedule = 20" \
  -- c1 c2 c3
jobs_pids=""
j=1
while [ "$j" -le 50 ]; do
  (
    fails=0
    k=1
    while [ "$k" -le 20 ]; do
      n=$(( (j - 1) * 20 + k ))
      message "conc $n" |
        run_at "$NOW" -odi "conc$n@example.net" 2>>"$T/job$j.err" ||
        fails=$((fails + 1))
      k=$((k + 1))
    done
    echo "$fails" > "$T/job$j.fails"
  ) &
  jobs_pids="$jobs_pids $!"
  j=$((j + 1))
done
for pid in $jobs_pids; do wait "$pid"; done
took=$(($(date +%s) - start_time))
echo "# 1000 submissions by 50 processes took $took s"

fails=0
j=1
while [ "$j" -le 50 ]; do
  f=$(cat "$T/job$j.fails" 2>/dev/null || echo 20)
  fails=$((fails + f))
  [ "$f" -eq 0 ] || sed 's/^/# /' "$T/job$j.err" | head -5
  j=$((j + 1))
done
expect_eq "1000 submissions: every rampmail exited 0" 0 "$fails"
expect_eq "each server took exactly its 20" "20 20 20" \
  "$(rcpt_total c1) $(rcpt_total c2) $(rcpt_total c3)"
expect_eq "exactly 60 delivered today" 60 "$(rcpt_total c1 c2 c3)"
expect_eq "940 stay queued" 940 "$(queued)"
subjects c1 c2 c3 | sort > "$T/sent.txt"
queued_subjects | sort > "$T/queued.txt"
expect_eq "none sent twice (60 distinct subjects)" 60 \
  "$(sort -u "$T/sent.txt" | wc -l)"
expect_eq "none both sent and queued" 0 \
  "$(sort "$T/sent.txt" "$T/queued.txt" | uniq -d | wc -l)"
seq 1000 | sed 's/^/conc /' | sort > "$T/all.txt"
expect_eq "none lost (sent + queued = the 1000 submitted)" "" \
  "$(sort "$T/sent.txt" "$T/queued.txt" | comm -3 - "$T/all.txt" | head -3)"
expect_eq "the state counts 60 sent today" 60 \
  "$(sql "SELECT SUM(rcpts) FROM sent WHERE day = '$(today "$NOW")'")"
expect_eq "no reservation is left over" 0 \
  "$(sql "SELECT COUNT(*) FROM reserved")"
# A queue run the same day sends nothing more.
run_at "2027-09-01 13:00:00" -q
expect_eq "a queue run the same day sends nothing more" 60 \
  "$(rcpt_total c1 c2 c3)"
for name in c1 c2 c3; do stop_server "$name"; done

# ---- reservations of processes that died -----------------------------------------------------

# dead_pid: the PID of a process that has exited.
dead_pid () {
  true &
  pid=$!
  wait "$pid"
  echo "$pid"
}

# reserve_dead SERVER RCPTS SENDING WHEN: a reservation row of a dead
# process, as a process killed at WHEN would leave it.
reserve_dead () {
  sql "INSERT INTO reserved (server, ts, day, rcpts, pid, sending)
       VALUES ('$1', $(epoch "$4"), '$(today "$4")', $2, $(dead_pid), $3)" \
    > /dev/null
}

for sending in 0 1; do
  fresh
  rm -rf "$T/k1.mail"
  start_server k1
  write_config "warmup = ramp" "timezone = UTC" "warmup_schedule = 10" -- k1
  NOW="2027-09-0$((3 + sending)) 12:00:00"
  i=1
  while [ "$i" -le 12 ]; do
    message "dead$sending $i" | run_at "$NOW" -odq "dead$i@example.net"
    i=$((i + 1))
  done
  # the state database exists once something ran with this configuration
  run_at "$NOW" --status > /dev/null
  reserve_dead k1 5 "$sending" "$NOW"
  run_at "$NOW" -q
  case $sending in
    0)
      expect_eq "a dead process's reservation (not sending) is released: the full 10 go" \
        10 "$(rcpt_total k1)" ;;
    1)
      expect_eq "a dead process's reservation (sending) counts as used: only 5 more go" \
        5 "$(rcpt_total k1)"
      expect_eq "  and it is recorded as sent" 10 \
        "$(sql "SELECT SUM(rcpts) FROM sent")" ;;
  esac
  expect_eq "dead reservation (sending=$sending): the row is gone" 0 \
    "$(sql "SELECT COUNT(*) FROM reserved")"
  stop_server k1
done

# A live process's reservation is kept: this shell's own PID stands in.
fresh
rm -rf "$T/k1.mail"
start_server k1
write_config "warmup = ramp" "timezone = UTC" "warmup_schedule = 10" -- k1
NOW="2027-09-05 12:00:00"
i=1
while [ "$i" -le 12 ]; do
  message "live $i" | run_at "$NOW" -odq "live$i@example.net"
  i=$((i + 1))
done
run_at "$NOW" --status > /dev/null
sql "INSERT INTO reserved (server, ts, day, rcpts, pid, sending)
     VALUES ('k1', $(epoch "$NOW"), '$(today "$NOW")', 4, $$, 0)" > /dev/null
run_at "$NOW" -q
expect_eq "a live process's reservation holds: 6 go" 6 "$(rcpt_total k1)"
sql "DELETE FROM reserved" > /dev/null
stop_server k1

# A real kill -9 while a process holds a reservation: the server greets
# only after 5 s, so the process waits with its reservation before any
# data went out. Killed then, nothing was sent: its reservation must be
# released.
fresh
rm -rf "$T/k2.mail"
start_server k2 --greeting-delay 5
write_config "warmup = ramp" "timezone = UTC" "warmup_schedule = 3" -- k2
NOW="2027-09-06 12:00:00"
message "killed" | run_at "$NOW" -odq killed@example.net
run_at "$NOW" --status > /dev/null
run_at "$NOW" -q 2>/dev/null &
victim=$!
i=0
while [ "$(sql "SELECT COUNT(*) FROM reserved" 2>/dev/null)" != 1 ] &&
    [ "$i" -lt 100 ]; do
  sleep 0.05
  i=$((i + 1))
done
expect_eq "the queue run holds a reservation while the server is silent" 1 \
  "$(sql "SELECT COUNT(*) FROM reserved")"
# faketime runs rampmail as its child: kill the rampmail process itself,
# not faketime (which reaps it at once; a zombie would still look alive
# to the next run). Both carry this test's configuration on their
# command line.
for pid in $(rampmail_pids); do
  [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$FAKETIME")" ] ||
    kill -9 "$pid" 2>/dev/null || :
done
wait "$victim" 2>/dev/null || :
stop_server k2
rm -rf "$T/k2.mail"
start_server k2
write_config "warmup = ramp" "timezone = UTC" "warmup_schedule = 3" -- k2
for i in 1 2 3; do
  message "after kill $i" | run_at "$NOW" -odq "after$i@example.net"
done
run_at "2027-09-06 12:01:00" -q
expect_eq "killed before any data went out: its reservation is released" \
  3 "$(rcpt_total k2)"
expect_eq "killed before any data went out: no row is left" 0 \
  "$(sql "SELECT COUNT(*) FROM reserved")"
stop_server k2

echo "# concurrency.sh took $(($(date +%s) - start_time)) s"
finish
