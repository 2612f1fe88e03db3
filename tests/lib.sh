# Shared by the integration tests (sourced, POSIX sh).
#
# Each test gets a private folder $T, starts its SMTP servers there with
# tests/smtpd.py (Debian's python3-aiosmtpd, always /usr/bin/python3), and
# writes a configuration that points rampmail at them. Everything started
# is stopped by PID on exit. Results are counted with check/expect_*;
# finish prints the tally and exits 1 if anything failed.

set -u

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
: "${RAMPMAIL:=$top_builddir/rampmail}"
: "${RAMPMAIL_PLUGIN_BUILD_DIR:=$top_builddir/plugins/.libs}"
PY=/usr/bin/python3
SMTPD="$top_srcdir/tests/smtpd.py"

if ! "$PY" -c 'import aiosmtpd' 2>/dev/null; then
  echo "SKIP: Debian's python3-aiosmtpd is not installed for /usr/bin/python3"
  exit 77
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/rampmail-test.XXXXXX")
PIDS=""
FAILED=0
PASSED=0
. "$top_srcdir/tests/results.sh"

cleanup () {
  kill_rampmail
  for pid in $PIDS; do
    kill "$pid" 2>/dev/null || :
  done
  for pid in $PIDS; do
    wait "$pid" 2>/dev/null || :
  done
  if [ "$FAILED" -eq 0 ] && [ -z "${KEEP_TEST_DIR:-}" ]; then
    rm -rf "$T"
  else
    echo "test files kept in $T"
  fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# start_server NAME [smtpd.py options...]: sets NAME's port in $T/NAME.port
start_server () {
  name=$1
  shift
  rm -f "$T/$name.port"
  "$PY" "$SMTPD" --port-file "$T/$name.port" --maildir "$T/$name.mail" \
    --log "$T/$name.log" "$@" 2>>"$T/$name.err" &
  PIDS="$PIDS $!"
  eval "PID_$name=$!"
  i=0
  while [ ! -s "$T/$name.port" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then
      echo "server $name did not start:"; cat "$T/$name.err"; exit 99
    fi
    sleep 0.05
  done
}

port_of () { cat "$T/$1.port"; }

# stop_server NAME
stop_server () {
  eval "pid=\$PID_$1"
  kill "$pid" 2>/dev/null || :
  wait "$pid" 2>/dev/null || :
}

# write_config [extra [rampmail] lines] -- then one "NAME [key=value...]"
# per server; a server named in $T/NAME.port gets host and port from it.
# delivery_mode is interactive and warmup none unless an extra line sets
# them. A server has tls = none unless its spec sets tls= or preset=,
# host 127.0.0.1 unless it sets host= (e.g. host=localhost, the name in
# the certificates of tests/certs.sh), and the port of $T/NAME.port unless
# it sets port= (e.g. port=$(port_of other)).
write_config () {
  conf="$T/rampmail.conf"
  {
    echo "[rampmail]"
    echo "queue_dir = $T/queue"
    echo "state_dir = $T/state"
    echo "plugin_dir = $RAMPMAIL_PLUGIN_BUILD_DIR"
    echo "log_file = $T/rampmail.log"
    echo "domain = example.test"
    echo "hostname = client.example.test"
    echo "aliases = $T/aliases"
    mode=interactive
    ramp=none
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
      case $1 in delivery_mode*) mode= ;; warmup\ *|warmup=*) ramp= ;; esac
      echo "$1"
      shift
    done
    # Tests read what arrived right after rampmail exits, so they deliver
    # in the foreground unless they say otherwise, and without the warmup
    # ramp (its own tests turn it on).
    [ -n "$mode" ] && echo "delivery_mode = $mode"
    [ -n "$ramp" ] && echo "warmup = $ramp"
    [ $# -gt 0 ] && shift
    for spec in "$@"; do
      set -- $spec
      echo
      echo "[server $1]"
      sname=$1
      shift
      case " $* " in *" host="*) ;; *) echo "host = 127.0.0.1" ;; esac
      case " $* " in
        *" port="*) ;;
        *) if [ -f "$T/$sname.port" ]; then
             echo "port = $(port_of "$sname")"
           fi ;;
      esac
      # Plain SMTP on loopback unless the spec says otherwise (a preset
      # brings its own tls).
      case " $* " in *" tls="*|*" preset="*) ;; *) echo "tls = none" ;; esac
      for kv in "$@"; do
        echo "$kv" | sed 's/=/ = /'
      done
    done
  } > "$conf"
}

# RAMPMAIL_VALGRIND=1 runs rampmail under valgrind's memcheck: an error
# or a definite leak makes it exit 99. With RAMPMAIL_VALGRIND_LOGDIR the
# reports go to files there (one per process) instead of standard error.
VALGRIND=""
if [ -n "${RAMPMAIL_VALGRIND:-}" ]; then
  VALGRIND="valgrind --error-exitcode=99 --leak-check=full
    --errors-for-leak-kinds=definite --track-fds=no -q
    --child-silent-after-fork=yes"
  if [ -n "${RAMPMAIL_VALGRIND_LOGDIR:-}" ]; then
    VALGRIND="$VALGRIND --log-file=$RAMPMAIL_VALGRIND_LOGDIR/vg.%p.log"
  fi
fi

rampmail () { $VALGRIND "$RAMPMAIL" -C "$T/rampmail.conf" "$@"; }

count_mail () { ls "$T/$1.mail" 2>/dev/null | grep -c '\.json$' || :; }

queued () { ls "$T/queue/env" 2>/dev/null | wc -l; }


# A small message; $1 is the Subject.
message () {
  printf 'From: Test <test@example.test>\nTo: rcpt@example.net\nSubject: %s\n\nbody of %s\n' "$1" "$1"
}

# rampmail_pids: PIDs of the rampmail processes that run with this test's
# configuration, background queue runners included (they keep the
# command line of the submission that forked them).
rampmail_pids () {
  # The bracket keeps grep from finding its own command line.
  grep -ls "$T/rampmail\.con[f]" /proc/[0-9]*/cmdline 2>/dev/null |
    sed -n 's|^/proc/\([0-9]*\)/cmdline$|\1|p' | grep -vx "$$" || :
}

# wait_runner [SECONDS]: waits (30 s at most) until no rampmail process of
# this test is left, so that background queue runners have finished.
# Returns 1 if some are still running.
wait_runner () {
  i=0
  while [ -n "$(rampmail_pids)" ]; do
    i=$((i + 1))
    [ $i -gt $((${1:-30} * 10)) ] && return 1
    sleep 0.1
  done
  return 0
}

# kill_rampmail: stops the rampmail processes of this test, by PID.
kill_rampmail () {
  for pid in $(rampmail_pids); do
    kill -9 "$pid" 2>/dev/null || :
  done
}

# queue_ids: the committed queue entries, one id a line.
queue_ids () { ls "$T/queue/env" 2>/dev/null || :; }

# wait_runner: waits (at most 10 s) until no background queue runner holds
# the queue's runner lock, e.g. before the configuration is rewritten.
wait_runner () {
  [ -f "$T/queue/runner.lock" ] || return 0
  i=0
  while ! flock -n "$T/queue/runner.lock" true && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
  done
}

# meta NAME N KEY: a field of message N of server NAME: "mail_from" ("<>"
# for the null sender), "rcpt_tos" as a space-separated sorted list.
meta () {
  "$PY" - "$(printf '%s/%s.mail/%04d.json' "$T" "$1" "$2")" "$3" <<'EOF'
import json, sys
try:
    v = json.load(open(sys.argv[1]))[sys.argv[2]]
except OSError:
    print("(none)")
    sys.exit(0)
print(" ".join(sorted(v)) if isinstance(v, list) else v)
EOF
}
