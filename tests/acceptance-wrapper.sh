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
exec "$RAMPMAIL" -C "$conf" -odi "$@"
