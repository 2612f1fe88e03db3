#!/bin/sh
# Adapter for ../shared/cases/run_cases.py: writes a configuration for the
# sink at HOST:PORT into WORKDIR and runs rampmail in the foreground (-odi)
# with the case's arguments.
# usage: acceptance-wrapper.sh HOST PORT WORKDIR [sendmail arguments...]
host=$1 port=$2 work=$3
shift 3
conf="$work/rampmail.conf"
cat > "$conf" <<CONF
[rampmail]
queue_dir = $work/queue
state_dir = $work/state
plugin_dir = $RAMPMAIL_PLUGIN_BUILD_DIR
log_file = $work/rampmail.log
domain = example.com
hostname = client.example.com
aliases = $work/aliases
delivery_mode = interactive
# The cases test the sendmail interface, not the ramp.
warmup = none

[server sink]
host = $host
port = $port
tls = none
timeout = 20
CONF
if [ -n "${RAMPMAIL_VALGRIND:-}" ]; then
  # memcheck, as in tests/lib.sh
  set -- valgrind --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite --track-fds=no -q \
    --child-silent-after-fork=yes \
    ${RAMPMAIL_VALGRIND_LOGDIR:+"--log-file=$RAMPMAIL_VALGRIND_LOGDIR/vg.%p.log"} \
    "$RAMPMAIL" -C "$conf" -odi "$@"
  exec "$@"
fi
exec "$RAMPMAIL" -C "$conf" -odi "$@"
