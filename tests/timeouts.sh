#!/bin/sh
# Hangs are bounded: libESMTP's own timeouts are milliseconds silently
# raised to RFC minimums (minutes), and its connect() has no timeout at all
# (../shared/libesmtp-facts.md, row 8). With timeout and connect_timeout
# set to 2 s, rampmail must give up within seconds and keep the message.
# The bound checked is loose (15 s): this is about not hanging, not speed.
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"

: > "$T/aliases"
BOUND=15

# timed_send RCPT: sends a message with -odi; sets st and elapsed. A
# rampmail that hangs is stopped after 30 s (status 124), so a regression
# fails here instead of stalling the test suite.
timed_send () {
  start=$(date +%s)
  message "$1" |
    timeout 30 "$RAMPMAIL" -C "$T/rampmail.conf" -odi "$1" 2>"$T/err"
  st=$?
  elapsed=$(($(date +%s) - start))
}

# ---- a server that accepts the connection and never greets -----------------------------

start_server mute --silent
write_config -- "mute timeout=2 connect_timeout=2"
timed_send silent@example.net
expect_eq "silent server: exit 0" 0 "$st"
check "silent server: gave up within ${BOUND}s (took ${elapsed}s)" \
  test "$elapsed" -lt "$BOUND"
expect_eq "silent server: the message stays queued" 1 "$(queued)"
check "silent server: logged as deferred" \
  grep -q 'silent@example.net.*deferred' "$T/rampmail.log"

# ---- a connect() that hangs -----------------------------------------------------------------

# A listening socket with backlog 0 whose accept queue is filled by
# connections nobody accepts: the kernel then drops further SYNs, so a
# connect() neither succeeds nor fails. The helper checks that a probe
# connect really hangs before it publishes the port, and exits by itself
# after 60 s in case nobody stops it.
cat > "$T/blackhole.py" <<'EOF'
import os, socket, sys, time
port_file, state_file = sys.argv[1], sys.argv[2]
ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
ls.bind(("127.0.0.1", 0))
ls.listen(0)
port = ls.getsockname()[1]
fillers = []
for _ in range(8):
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.setblocking(False)
    try:
        c.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    fillers.append(c)
time.sleep(0.3)
probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
probe.settimeout(1.0)
try:
    probe.connect(("127.0.0.1", port))
    state = "connects"
except socket.timeout:
    state = "hangs"
except OSError as e:
    state = "fails: %s" % e
probe.close()
with open(state_file + ".tmp", "w") as f:
    f.write(state + "\n")
with open(port_file + ".tmp", "w") as f:
    f.write("%d\n" % port)
os.rename(state_file + ".tmp", state_file)
os.rename(port_file + ".tmp", port_file)
time.sleep(60)
EOF
rm -rf "$T/queue" "$T/state" "$T/rampmail.log"
"$PY" "$T/blackhole.py" "$T/hole.port" "$T/hole.state" 2>"$T/hole.err" &
hole_pid=$!
PIDS="$PIDS $hole_pid"
i=0
while [ ! -s "$T/hole.port" ] && [ $i -lt 100 ]; do
  sleep 0.1
  i=$((i + 1))
done
if [ "$(cat "$T/hole.state" 2>/dev/null)" != hangs ]; then
  echo "# skipped: hanging connect: the kernel did not drop SYNs" \
    "($(cat "$T/hole.state" "$T/hole.err" 2>/dev/null))"
else
  write_config -- "hole timeout=2 connect_timeout=2"
  timed_send hang@example.net
  expect_eq "hanging connect: exit 0" 0 "$st"
  check "hanging connect: gave up within ${BOUND}s (took ${elapsed}s)" \
    test "$elapsed" -lt "$BOUND"
  expect_eq "hanging connect: the message stays queued" 1 "$(queued)"
  check "hanging connect: logged as deferred" \
    grep -q 'hang@example.net.*deferred' "$T/rampmail.log"
fi
kill "$hole_pid" 2>/dev/null
wait "$hole_pid" 2>/dev/null

finish
