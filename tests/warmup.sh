#!/bin/sh
# The warmup ramp through real delivery, with the clock set by faketime:
# a server walked through days 1 to 40, holding at its cap; a restart
# after a pause; a low-volume server that does not advance; day
# boundaries in a configured time zone and on daylight-saving days; the
# rolling 24-hour cap across midnight; recipients split over servers,
# over days and by max_rcpts; waiting messages never bounced and sent in
# submission order; --status; pacing by min_gap and hourly_share.
#
# Every rampmail run gets an absolute fake date (faketime, UTC), so each
# run is one process at one moment; the SMTP servers run on the real
# clock.
FAKETIME=/usr/bin/faketime
if [ ! -x "$FAKETIME" ]; then
  echo "SKIP: faketime is not installed (Debian package faketime)"
  exit 77
fi
if [ "$(TZ=UTC "$FAKETIME" '2027-01-10 12:00:00' date -u +%F)" != 2027-01-10 ]
then
  echo "SKIP: faketime does not set the clock here"
  exit 77
fi

. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"

: > "$T/aliases"

# fresh: forget the queue, the counters and the log.
fresh () { rm -rf "$T/queue" "$T/state" "$T/rampmail.log"; }

# run_at WHEN ARGS...: rampmail with the clock at WHEN ("YYYY-MM-DD HH:MM:SS",
# UTC).
run_at () {
  when=$1
  shift
  TZ=UTC "$FAKETIME" "$when" "$RAMPMAIL" -C "$T/rampmail.conf" "$@"
}

# day_after DATE N: the date N days after DATE.
day_after () { date -u -d "$1 +$2 days" +%F; }

# rcpt_list PREFIX N: PREFIX1@example.net ... PREFIXN@example.net
rcpt_list () {
  i=1
  while [ "$i" -le "$2" ]; do
    printf '%s%d@example.net ' "$1" "$i"
    i=$((i + 1))
  done
}

# submit WHEN SUBJECT RCPT...: queues one message (no delivery).
submit () {
  when=$1
  subj=$2
  shift 2
  message "$subj" | run_at "$when" -odq "$@"
}

# mail NAME... ARGS: what the servers got, through a small reader:
#   total NAME...     recipients they accepted, all together
#   txns NAME         recipients per transaction, in order ("3 3 1")
#   dups NAME...      recipients that arrived more than once (none: "")
#   subjects NAME...  the Subject of each transaction, in arrival order
cat > "$T/mail.py" <<'EOF'
import glob, json, os, sys
cmd, names = sys.argv[1], sys.argv[2:]
base = os.environ["T"]
txns = []
for name in names:
    for path in sorted(glob.glob(os.path.join(base, name + ".mail", "*.json"))):
        meta = json.load(open(path))
        subject = ""
        with open(path[:-5] + ".eml", "rb") as f:
            for line in f.read().decode("utf-8", "replace").split("\r\n"):
                if line == "":
                    break
                if line.lower().startswith("subject:"):
                    subject = line[8:].strip()
        txns.append((meta["rcpt_tos"], subject))
if cmd == "total":
    print(sum(len(r) for r, _ in txns))
elif cmd == "txns":
    print(" ".join(str(len(r)) for r, _ in txns))
elif cmd == "dups":
    seen = {}
    for r, s in txns:
        for a in r:
            seen[(s, a)] = seen.get((s, a), 0) + 1
    print(" ".join(sorted(f"{a}" for (s, a), n in seen.items() if n > 1)))
elif cmd == "unique":
    print(len(set((s, a) for r, s in txns for a in r)))
elif cmd == "subjects":
    print(" | ".join(s for _, s in txns))
EOF
export T
mail () {
  if [ "$1" = total ]; then
    # quick: json.dump(indent=1) puts each recipient on a line of its own
    shift
    for name in "$@"; do cat "$T/$name.mail"/*.json 2>/dev/null; done |
      grep -c '^  "[^"]*@[^"]*",\{0,1\}$' || :
  else
    "$PY" "$T/mail.py" "$@"
  fi
}

# status WHEN: rampmail --status at WHEN, also kept in $T/status.out.
status () { run_at "$1" --status > "$T/status.out" 2>&1; cat "$T/status.out"; }

# status_has WHEN TEXT: --status at WHEN prints TEXT.
status_has () {
  status "$1" | grep -qF -- "$2" || {
    echo "# --status at $1 lacks: $2"; sed 's/^/#   /' "$T/status.out"
    return 1
  }
}

# ---- days 1 to 40: 2, 4, 8, 16, then 16 held ---------------------------------------

start_time=$(date +%s)
start_server w1
write_config "warmup = ramp" "timezone = UTC" "warmup_start = 2" \
  "warmup_growth = 2" "warmup_cap = 16" -- w1
first=2027-01-10
# Messages of 2 recipients, which each fit a day whole (allowances are
# even), so that the walk tests the schedule alone; splitting a message
# over days is tested further down. Each day gets as many new messages
# as its allowance takes, on top of one more than that queued on day 1,
# so that there is always more waiting than the day allows, and the
# queue stays short (a queue run is quick).
walk_n=0
# feed DAY N: queues N messages of 2 recipients at 11:00 on DAY.
feed () {
  k=0
  while [ "$k" -lt "$2" ]; do
    walk_n=$((walk_n + 1))
    submit "$1 11:00:00" "walk $walk_n" "walk${walk_n}a@example.net" \
      "walk${walk_n}b@example.net"
    k=$((k + 1))
  done
}
feed "$first" 1
want_all=""
got_all=""
status_bad=0
sent=0
d=1
while [ "$d" -le 40 ]; do
  today=$(day_after "$first" $((d - 1)))
  want=$((1 << d))
  [ "$want" -gt 16 ] && want=16
  # A minute later each day: the rolling 24 hours (cap 16) must not
  # count the day before's sends.
  hm=$(printf '12:%02d' "$d")
  feed "$today" $((want / 2))
  if ! status "$today $hm:00" |
      grep -qF "ramp day $d, allowance $want, used 0, left $want"; then
    status_bad=$((status_bad + 1))
    echo "# day $d ($today): wanted ramp day $d, allowance $want:"
    sed 's/^/#   /' "$T/status.out"
  fi
  run_at "$today $hm:05" -q
  now=$(mail total w1)
  want_all="$want_all $want"
  got_all="$got_all $((now - sent))"
  sent=$now
  d=$((d + 1))
done
expect_eq "walk: recipients sent on days 1..40 follow the schedule" \
  "$want_all" "$got_all"
expect_eq "walk: --status shows each day's ramp day and allowance" 0 \
  "$status_bad"
expect_eq "walk: 606 recipients sent in 40 days" 606 "$sent"
expect_eq "walk: nobody got it twice" "" "$(mail dups w1)"
expect_eq "walk: one message still waits" 1 "$(queued)"
day40=$(day_after "$first" 39)
check "walk: day 40 at the cap: used 16, left 0" \
  status_has "$day40 18:00:00" "ramp day 40, allowance 16, used 16, left 0"
# 16 sent at 12:40 fill the rolling 24 hours (cap 16) as well: the
# window opens 24 hours later, not at midnight
check "walk: day 40: the server waits until 12:40 the next day" \
  status_has "$day40 18:00:00" \
  "waits: its cap is used up in the last 24 hours; next window at $(day_after "$day40" 1) 12:40"
check "walk: day 40: the waiting message says the same window" \
  status_has "$day40 18:00:00" \
  "all servers are at their allowance; next window at $(day_after "$day40" 1) 12:40"

# ---- restart after a pause -------------------------------------------------------------

# 6 days without sending (days 41..46): day 47 goes on at the cap.
day47=$(day_after "$first" 46)
check "6 quiet days: no restart (ramp day 41, allowance 16)" \
  status_has "$day47 11:00:00" "ramp day 41, allowance 16, used 0, left 16"
feed "$day47" 8
run_at "$day47 12:47:00" -q
now=$(mail total w1)
expect_eq "6 quiet days: 16 sent" 16 $((now - sent))
sent=$now
# 7 days without sending (48..54, the default warmup_restart_after):
# day 55 starts again at ramp day 1.
day55=$(day_after "$first" 54)
check "7 quiet days: back to ramp day 1" \
  status_has "$day55 11:00:00" "ramp day 1, allowance 2, used 0, left 2"
feed "$day55" 1
run_at "$day55 12:55:00" -q
now=$(mail total w1)
expect_eq "7 quiet days: restarted, 2 sent" 2 $((now - sent))
sent=$now
feed "$(day_after "$day55" 1)" 2
run_at "$(day_after "$day55" 1) 12:56:00" -q
now=$(mail total w1)
expect_eq "after the restart: ramp day 2 sends 4" 4 $((now - sent))
sent=$now
expect_eq "walk and restarts: nobody got it twice" "" "$(mail dups w1)"
expect_eq "walk and restarts: 628 distinct recipients" 628 \
  "$(mail unique w1)"
expect_eq "walk and restarts: one message still waits" 1 "$(queued)"
check "walk and restarts: nothing bounced or expired" \
  sh -c '! grep -qiE "bounce|expired" "$1"' sh "$T/rampmail.log"
stop_server w1

# ---- one message larger than the allowance, over days -----------------------------------

# 12 recipients at 2 a day take 6 days; queue_lifetime is 2 days, but
# time spent waiting for an allowance does not count towards expiry, so
# the rest must neither expire nor bounce.
fresh
start_server b1
write_config "warmup = ramp" "timezone = UTC" "warmup_schedule = 2" \
  "queue_lifetime = 2d" -- b1
submit "2027-02-20 11:59:00" "big" $(rcpt_list big 12)
per_day=""
prev=0
reason_bad=0
d=0
while [ "$d" -lt 6 ]; do
  today=$(day_after 2027-02-20 "$d")
  run_at "$today $(printf '12:%02d' "$d"):00" -q
  now=$(mail total b1)
  per_day="$per_day $((now - prev))"
  prev=$now
  if [ "$d" -lt 5 ] && ! status "$today 13:00:00" |
      grep -qF "all servers are at their allowance; next window at"; then
    reason_bad=$((reason_bad + 1))
    echo "# day $((d + 1)): the entry does not say it waits for an allowance:"
    sed 's/^/#   /' "$T/status.out"
  fi
  d=$((d + 1))
done
expect_eq "12 recipients at 2 a day: 2 each day for 6 days" \
  " 2 2 2 2 2 2" "$per_day"
expect_eq "12 recipients over 6 days: the rest always waits for an allowance" \
  0 "$reason_bad"
expect_eq "12 recipients over 6 days: each exactly once" 12 \
  "$(mail unique b1)"
expect_eq "12 recipients over 6 days: no duplicates" "" "$(mail dups b1)"
check "12 recipients over 6 days: nothing expired or bounced" \
  sh -c '! grep -qiE "bounce|expired" "$1"' sh "$T/rampmail.log"
expect_eq "12 recipients over 6 days: the queue is empty" 0 "$(queued)"
stop_server b1

# A configured warmup_restart_after of 2 days.
fresh
start_server r1
write_config "warmup = ramp" "timezone = UTC" "warmup_schedule = 2, 4, 8" \
  "warmup_restart_after = 2" -- r1
i=1
while [ "$i" -le 10 ]; do
  submit "2027-02-01 11:00:00" "restart $i" "r${i}a@example.net" \
    "r${i}b@example.net"
  i=$((i + 1))
done
run_at "2027-02-01 12:00:00" -q
run_at "2027-02-02 12:00:00" -q
expect_eq "restart_after 2: days 1 and 2 send 2 + 4" 6 "$(mail total r1)"
# one quiet day (02-03): no restart
run_at "2027-02-04 12:00:00" -q
expect_eq "restart_after 2: one quiet day, day 3 sends 8" 14 \
  "$(mail total r1)"
# two quiet days (02-05, 02-06): restart
run_at "2027-02-07 12:00:00" -q
expect_eq "restart_after 2: two quiet days, back to 2" 16 "$(mail total r1)"
check "restart_after 2: --status shows ramp day 1" \
  status_has "2027-02-07 13:00:00" "ramp day 1, allowance 2, used 2, left 0"
stop_server r1

# ---- a low-volume server does not advance ------------------------------------------------

fresh
start_server v1
write_config "warmup = ramp" "timezone = UTC" "warmup_start = 4" \
  "warmup_growth = 2" "warmup_cap = 64" -- v1
d=0
while [ "$d" -lt 10 ]; do
  today=$(day_after 2027-03-01 "$d")
  submit "$today 09:00:00" "low $d" "low$d@example.net"
  run_at "$today 12:00:00" -q
  d=$((d + 1))
done
expect_eq "1 a day for 10 days: all 10 sent" 10 "$(mail total v1)"
check "1 a day for 10 days (allowance 4): still ramp day 1" \
  status_has "2027-03-11 08:00:00" "ramp day 1, allowance 4, used 0, left 4"
# half the allowance (2 of 4) is a ramp day
submit "2027-03-11 09:00:00" "half" half1@example.net half2@example.net
run_at "2027-03-11 12:00:00" -q
check "2 of 4 (min_share 0.5) moves it to ramp day 2" \
  status_has "2027-03-12 08:00:00" "ramp day 2, allowance 8, used 0, left 8"
stop_server v1

# ---- the day boundary in the configured time zone ------------------------------------------

# 2027-01-10 10:00 UTC is 23:00 in Auckland (NZDT, UTC+13); 11:30 UTC is
# 00:30 on 01-11 there, still 01-10 in UTC.
for zone in UTC Pacific/Auckland; do
  fresh
  rm -rf "$T/z1.mail"
  start_server z1
  # the last entry (the rolling 24-hour cap) is out of the way
  write_config "warmup = ramp" "timezone = $zone" \
    "warmup_schedule = 2, 4, 8, 100" -- z1
  submit "2027-01-10 09:00:00" "zone $zone" $(rcpt_list z 30)
  run_at "2027-01-10 10:00:00" -q
  expect_eq "$zone: first day sends 2" 2 "$(mail total z1)"
  run_at "2027-01-10 11:30:00" -q
  case $zone in
    UTC)
      expect_eq "UTC: 11:30 UTC is the same day, nothing more" 2 \
        "$(mail total z1)"
      run_at "2027-01-10 23:30:00" -q
      expect_eq "UTC: 23:30 UTC is still the same day" 2 "$(mail total z1)"
      check "UTC: --status at 23:30 waits for 01-11 00:00" \
        status_has "2027-01-10 23:30:00" "next window at 2027-01-11 00:00"
      run_at "2027-01-11 00:00:30" -q
      expect_eq "UTC: after midnight UTC, ramp day 2 sends 4" 6 \
        "$(mail total z1)" ;;
    *)
      expect_eq "Auckland: 11:30 UTC is the next day there, 4 more" 6 \
        "$(mail total z1)"
      check "Auckland: --status shows ramp day 2 used up" \
        status_has "2027-01-10 11:45:00" \
        "ramp day 2, allowance 4, used 4, left 0"
      check "Auckland: next window at local midnight" \
        status_has "2027-01-10 11:45:00" "next window at 2027-01-12 00:00"
      check "Auckland: --status names the zone" \
        status_has "2027-01-10 11:45:00" "day boundary: Pacific/Auckland"
      # 23:30 UTC on 01-10 is 12:30 on 01-11 in Auckland: the same day.
      run_at "2027-01-10 23:30:00" -q
      expect_eq "Auckland: 23:30 UTC counts on the same Auckland day" 6 \
        "$(mail total z1)"
      # 11:00 UTC on 01-11 is 00:00 on 01-12 there: day 3.
      run_at "2027-01-11 11:00:30" -q
      expect_eq "Auckland: next Auckland midnight, ramp day 3 sends 8" 14 \
        "$(mail total z1)" ;;
  esac
  days=$("$PY" -c '
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(" ".join(d for (d,) in db.execute(
    "SELECT day FROM sent GROUP BY day ORDER BY day")))' \
    "$T/state/state.sqlite")
  case $zone in
    UTC) want_days="2027-01-10 2027-01-11" ;;
    *) want_days="2027-01-10 2027-01-11 2027-01-12" ;;
  esac
  expect_eq "$zone: the days recorded in the state" "$want_days" "$days"
  stop_server z1
done

# ---- daylight saving time: Europe/Paris ------------------------------------------------------

# 2027-03-28 has 23 hours in Paris (02:00 CET -> 03:00 CEST), 2027-10-31
# has 25 (03:00 CEST -> 02:00 CET). Days stay calendar days.
fresh
start_server p1
write_config "warmup = ramp" "timezone = Europe/Paris" \
  "warmup_schedule = 2, 4, 8, 16, 32" -- p1
submit "2027-03-27 08:00:00" "paris" $(rcpt_list p 100)
run_at "2027-03-27 11:00:00" -q                  # 12:00 CET on 03-27
expect_eq "Paris 03-27: day 1 sends 2" 2 "$(mail total p1)"
run_at "2027-03-27 23:30:00" -q                  # 00:30 CET on 03-28
expect_eq "Paris 03-28 00:30 (before the change): day 2 sends 4" 6 \
  "$(mail total p1)"
check "Paris 03-28 after the change: still ramp day 2, used up" \
  status_has "2027-03-28 01:30:00" "ramp day 2, allowance 4, used 4, left 0"
check "Paris 03-28: next window at 03-29 00:00 (22:00 UTC)" \
  status_has "2027-03-28 01:30:00" "next window at 2027-03-29 00:00"
run_at "2027-03-28 21:30:00" -q                  # 23:30 CEST on 03-28
expect_eq "Paris 03-28 23:30 CEST: still the same day, nothing" 6 \
  "$(mail total p1)"
run_at "2027-03-28 22:00:30" -q                  # 00:00 CEST on 03-29
expect_eq "Paris 03-29 00:00 CEST: day 3 sends 8" 14 "$(mail total p1)"
check "Paris 03-29: ramp day 3" \
  status_has "2027-03-28 22:10:00" "ramp day 3, allowance 8, used 8, left 0"
run_at "2027-03-29 22:30:00" -q                  # 00:30 CEST on 03-30
expect_eq "Paris 03-30: day 4 sends 16" 30 "$(mail total p1)"
stop_server p1

fresh
start_server p2
write_config "warmup = ramp" "timezone = Europe/Paris" \
  "warmup_schedule = 2, 4, 8" -- p2
submit "2027-10-30 08:00:00" "paris autumn" $(rcpt_list q 40)
run_at "2027-10-30 10:00:00" -q                  # 12:00 CEST on 10-30
run_at "2027-10-30 22:30:00" -q                  # 00:30 CEST on 10-31
expect_eq "Paris 10-31 00:30: day 2 sends 4" 6 "$(mail total p2)"
run_at "2027-10-31 22:30:00" -q                  # 23:30 CET on 10-31
expect_eq "Paris 10-31 23:30 CET (25-hour day): still the same day" 6 \
  "$(mail total p2)"
run_at "2027-10-31 23:00:30" -q                  # 00:00 CET on 11-01
expect_eq "Paris 11-01 00:00 CET: day 3 sends 8" 14 "$(mail total p2)"
expect_eq "Paris: nobody got it twice" "" "$(mail dups p2)"
stop_server p2

# ---- the rolling 24 hours across midnight ---------------------------------------------------

fresh
start_server h1
write_config "warmup = ramp" "timezone = UTC" "warmup_schedule = 10" -- h1
submit "2027-04-01 22:00:00" "rolling" $(rcpt_list h 40)
run_at "2027-04-01 23:00:00" -q
expect_eq "rolling: 10 sent at 23:00" 10 "$(mail total h1)"
run_at "2027-04-02 00:30:00" -q
expect_eq "rolling: 00:30 the next day (a new day) sends 0" 10 \
  "$(mail total h1)"
check "rolling: --status at 00:30 shows a fresh day with nothing left" \
  status_has "2027-04-02 00:30:00" "ramp day 2, allowance 10, used 0, left 0"
check "rolling: --status says the 24-hour cap waits until 23:00" \
  status_has "2027-04-02 00:30:00" "next window at 2027-04-02 23:00"
run_at "2027-04-02 22:59:00" -q
expect_eq "rolling: 22:59 the next day still sends 0" 10 "$(mail total h1)"
run_at "2027-04-02 23:00:30" -q
expect_eq "rolling: 24 hours later it sends 10" 20 "$(mail total h1)"
expect_eq "rolling: nobody got it twice" "" "$(mail dups h1)"
stop_server h1

# ---- recipients split over servers, and over days -------------------------------------------

fresh
for name in s1 s2 s3; do start_server "$name"; done
write_config "warmup = ramp" "timezone = UTC" "warmup_schedule = 10" \
  -- s1 s2 s3
submit "2027-05-03 11:00:00" "split 30" $(rcpt_list s 30)
run_at "2027-05-03 12:00:00" -q
expect_eq "30 recipients over 3 servers allowed 10: one transaction each" \
  "1 1 1" "$(for s in s1 s2 s3; do
    ls "$T/$s.mail" | grep -c '\.json$'; done | tr '\n' ' ' | sed 's/ $//')"
expect_eq "30 recipients: 10 + 10 + 10" "10 10 10" \
  "$(mail txns s1) $(mail txns s2) $(mail txns s3)"
expect_eq "30 recipients: each once" 30 "$(mail unique s1 s2 s3)"
expect_eq "30 recipients: no duplicates" "" "$(mail dups s1 s2 s3)"
expect_eq "30 recipients: nothing queued" 0 "$(queued)"

# 45 recipients while 30 are allowed today (a new day, 24 h later)
submit "2027-05-04 12:00:00" "split 45" $(rcpt_list t 45)
run_at "2027-05-04 12:30:00" -q
expect_eq "45 recipients, 30 allowed: 30 go today" 60 \
  "$(mail total s1 s2 s3)"
expect_eq "45 recipients: the rest stays queued" 1 "$(queued)"
# each server sent its cap (10) at 12:30: the rolling 24 hours end
# after the day's allowance
check "45 recipients: the servers wait for their 24-hour window" \
  status_has "2027-05-04 12:31:00" \
  "its cap is used up in the last 24 hours; next window at 2027-05-05 12:30"
check "45 recipients: the entry waits for the next window" \
  status_has "2027-05-04 12:31:00" \
  "all servers are at their allowance; next window at 2027-05-05 12:30"
run_at "2027-05-05 12:31:00" -q
expect_eq "45 recipients: the other 15 go the next day" 75 \
  "$(mail total s1 s2 s3)"
expect_eq "45 recipients: each exactly once" 75 "$(mail unique s1 s2 s3)"
expect_eq "45 recipients: no duplicates" "" "$(mail dups s1 s2 s3)"
expect_eq "45 recipients: queue empty" 0 "$(queued)"
for name in s1 s2 s3; do stop_server "$name"; done

# ---- max_rcpts ------------------------------------------------------------------------------

fresh
start_server m1
write_config "timezone = UTC" -- "m1 max_rcpts=3"
submit "2027-05-10 11:00:00" "max 7" $(rcpt_list m 7)
run_at "2027-05-10 12:00:00" -q
expect_eq "max_rcpts 3: 7 recipients go as 3 + 3 + 1" "3 3 1" \
  "$(mail txns m1)"
expect_eq "max_rcpts 3: each once" 7 "$(mail unique m1)"
expect_eq "max_rcpts 3: nothing queued" 0 "$(queued)"
# whatever the first run did, later runs must bring each recipient once
run_at "2027-05-10 12:10:00" -q
run_at "2027-05-10 12:20:00" -q
expect_eq "max_rcpts 3: after later runs, all 7 once" 7 "$(mail unique m1)"
expect_eq "max_rcpts 3: after later runs, no duplicates" "" "$(mail dups m1)"
stop_server m1

# ---- waiting messages: never bounced, submission order --------------------------------------

fresh
start_server o1
write_config "warmup = ramp" "timezone = UTC" "warmup_schedule = 3" \
  "queue_lifetime = 1h" -- o1
i=1
while [ "$i" -le 7 ]; do
  submit "2027-06-01 11:5$i:00" "order $i" "order$i@example.net"
  i=$((i + 1))
done
run_at "2027-06-01 12:00:00" -q
expect_eq "order: day 1 sends the first 3" "order 1 | order 2 | order 3" \
  "$(mail subjects o1)"
expect_eq "order: 4 wait" 4 "$(queued)"
check "order: mailq says why the rest waits" \
  sh -c "TZ=UTC $FAKETIME '2027-06-01 12:05:00' '$RAMPMAIL' -C '$T/rampmail.conf' -bp | grep -qF '(all servers are at their allowance; next window at 2027-06-02 12:00)'"
run_at "2027-06-02 12:01:00" -q
expect_eq "order: day 2 sends the next 3" \
  "order 1 | order 2 | order 3 | order 4 | order 5 | order 6" \
  "$(mail subjects o1)"
run_at "2027-06-03 12:02:00" -q
expect_eq "order: then the rest, in submission order" \
  "order 1 | order 2 | order 3 | order 4 | order 5 | order 6 | order 7" \
  "$(mail subjects o1)"
expect_eq "order: the queue is empty" 0 "$(queued)"
check "order: nothing bounced or expired (queue_lifetime 1h, 2 days waited)" \
  sh -c '! grep -qiE "bounce|expired" "$1"' sh "$T/rampmail.log"
check "order: nothing kept as failed" \
  sh -c '[ -z "$(ls "$1" 2>/dev/null)" ]' sh "$T/queue/failed"
stop_server o1

# ---- --status: figures, reasons and the projected empty day ----------------------------------

fresh
start_server st1
write_config "warmup = ramp" "timezone = UTC" "warmup_schedule = 2, 4, 8" \
  -- st1
submit "2027-07-01 11:00:00" "status" $(rcpt_list st 20)
check "status before: ramp day 1, allowance 2, used 0, left 2" \
  status_has "2027-07-01 11:30:00" \
  "ramp day 1, allowance 2, used 0, left 2, last send never"
check "status before: 20 recipients wait, empty on 07-04 (2 + 4 + 8 + 8)" \
  status_has "2027-07-01 11:30:00" \
  "20 recipients wait; at today's allowances and ramp the queue is empty on 2027-07-04"
run_at "2027-07-01 12:00:00" -q
check "status after: used 2, left 0, last send 12:00" \
  status_has "2027-07-01 12:10:00" \
  "ramp day 1, allowance 2, used 2, left 0, last send 2027-07-01 12:00"
check "status after: the server waits for the next window" \
  status_has "2027-07-01 12:10:00" \
  "waits: today's allowance is used up; next window at 2027-07-02 00:00"
check "status after: the message says why it waits" \
  status_has "2027-07-01 12:10:00" \
  "all servers are at their allowance; next window at 2027-07-02 00:00"
check "status after: 18 recipients, still empty on 07-04" \
  status_has "2027-07-01 12:10:00" \
  "18 recipients wait; at today's allowances and ramp the queue is empty on 2027-07-04"
check "mailq says why the message waits" \
  sh -c "TZ=UTC $FAKETIME '2027-07-01 12:10:00' '$RAMPMAIL' -C '$T/rampmail.conf' -bp | grep -qF '(all servers are at their allowance; next window at 2027-07-02 00:00)'"
stop_server st1

# ---- pacing: min_gap and hourly_share --------------------------------------------------------

fresh
start_server g1
# Margins of a minute or more on each side of every gap: under load (the
# package test's debootstrap next to this one) a run can take seconds
# between its fake start and its reservation.
write_config "timezone = UTC" -- "g1 min_gap=600"
for i in 1 2 3; do
  submit "2027-08-01 11:0$i:00" "gap $i" "gap$i@example.net"
done
run_at "2027-08-01 12:00:00" -q
expect_eq "min_gap 600: a queue run sends 1 now" 1 "$(mail total g1)"
expect_eq "min_gap 600: 2 wait" 2 "$(queued)"
check "min_gap 600: the server waits the gap, next window 12:10" \
  status_has "2027-08-01 12:00:10" \
  "waits: it waits the minimum gap between messages; next window at 2027-08-01 12:10"
check "min_gap 600: the entries' next attempt is about 600 s later" \
  status_has "2027-08-01 12:00:10" "next attempt 2027-08-01 12:10"
run_at "2027-08-01 12:05:00" -q
expect_eq "min_gap 600: 5 minutes later still nothing" 1 "$(mail total g1)"
run_at "2027-08-01 12:11:00" -q
expect_eq "min_gap 600: after 10 minutes one more" 2 "$(mail total g1)"
run_at "2027-08-01 12:20:00" -q
expect_eq "min_gap 600: not before the next gap" 2 "$(mail total g1)"
run_at "2027-08-01 12:22:00" -q
expect_eq "min_gap 600: and the last one a gap later" 3 "$(mail total g1)"
stop_server g1

fresh
start_server q1
write_config "warmup = ramp" "timezone = UTC" "warmup_schedule = 20" \
  "hourly_share = 0.25" -- q1
submit "2027-08-02 11:00:00" "hourly" $(rcpt_list hr 12)
run_at "2027-08-02 12:00:00" -q
expect_eq "hourly_share 0.25 of 20: 5 in the first hour" 5 \
  "$(mail total q1)"
run_at "2027-08-02 12:30:00" -q
expect_eq "hourly_share: 30 minutes later nothing" 5 "$(mail total q1)"
check "hourly_share: --status says why" \
  status_has "2027-08-02 12:30:00" "its hourly share is used up"
run_at "2027-08-02 13:00:30" -q
expect_eq "hourly_share: an hour later 5 more" 10 "$(mail total q1)"
stop_server q1

echo "# warmup.sh took $(($(date +%s) - start_time)) s"
finish
