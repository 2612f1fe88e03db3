#!/bin/bash
# bench/run.sh: the shared harness (../shared/bench) with rampmail added.
#
#   bench/run.sh                 full run: the harness's full defaults, the
#                                peers and floors plus rampmail, rampmail-bg
#                                and rampmail-odq (about 10 minutes)
#   bench/run.sh --quick         the harness's quick defaults (about 5 minutes)
#   bench/run.sh [--quick] [bench.py options...]   e.g.
#        --subjects rawsmtp,msmtp,rampmail --phases latency,ir
#
# As root (the harness needs it).  RAMPMAIL names the binary (default
# /tmp/build-bench/rampmail, an out-of-tree -O2 build); its plugins are
# taken from plugins/.libs next to it (RAMPMAIL_PLUGIN_DIR overrides).
# Results: /tmp/rampbench/results/<stamp>/{report.md,results.json,logs/}.
#
# The harness is run, not copied: its setup.sh is invoked as it is, the
# quick/full option sets are read from its run.sh, and bench/launch.py
# imports its bench.py and adapters.py and registers rampmail's adapters.
# bench/extra.py measures what the harness lacks (see doc/performance.md).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HARNESS=${BENCH_HARNESS:-$(cd "$HERE/../../shared/bench" && pwd)}
export BENCH_HARNESS=$HARNESS
export RAMPMAIL=${RAMPMAIL:-/tmp/build-bench/rampmail}

[ -x "$RAMPMAIL" ] || { echo "bench/run.sh: $RAMPMAIL not found; build it:" \
    "mkdir -p /tmp/build-bench && cd /tmp/build-bench && /work/main/configure -q CFLAGS='-O2 -g' && make -j2" >&2; exit 1; }

mode=full
if [ "${1:-}" = "--quick" ]; then
    mode=quick
    shift
fi

"$HARNESS/setup.sh"

# The harness's own quick/full defaults (the `if [ $mode = quick ] ... fi`
# block of its run.sh sets `minutes` and `args`), so the two stay in step.
block=$(sed -n '/^if \[ \$mode = quick \]; then$/,/^fi$/p' "$HARNESS/run.sh")
[ -n "$block" ] || { echo "bench/run.sh: cannot find the defaults in $HARNESS/run.sh" >&2; exit 1; }
eval "$block"
# Three more subjects than the harness's seven: more time.
minutes=$(( ${minutes} * 2 ))
for ((i = 1; i <= $#; i++)); do
    if [ "${!i}" = "--max-minutes" ]; then
        j=$((i + 1))
        minutes=${!j}
    elif [[ "${!i}" == --max-minutes=* ]]; then
        minutes=${!i#--max-minutes=}
    fi
done
hard=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 + 120 }')
exec timeout --signal=TERM --kill-after=30 "$hard" \
    /usr/bin/python3 "$HERE/launch.py" "${args[@]}" --max-minutes "$minutes" "$@"
