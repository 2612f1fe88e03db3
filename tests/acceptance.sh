#!/bin/sh
# Runs the sendmail acceptance cases against the built rampmail.
# usage: tests/acceptance.sh [CASES_DIR]
# CASES_DIR defaults to $RAMPMAIL_CASES_DIR, then to ../shared/cases.
# Extra options for run_cases.py can be given in ACCEPTANCE_OPTS.
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
: "${RAMPMAIL:=$top_builddir/rampmail}"
: "${RAMPMAIL_PLUGIN_BUILD_DIR:=$top_builddir/plugins/.libs}"
export RAMPMAIL RAMPMAIL_PLUGIN_BUILD_DIR

cases=${1:-${RAMPMAIL_CASES_DIR:-}}
if [ -z "$cases" ]; then
  for d in "$top_srcdir/../shared/cases" "$top_srcdir/../../shared/cases"; do
    if [ -f "$d/run_cases.py" ]; then cases=$d; break; fi
  done
fi
if [ -z "$cases" ] || [ ! -d "$cases" ]; then
  echo "SKIP: no acceptance cases found (expected ../shared/cases beside the source tree)"
  exit 77
fi
runner="$cases/run_cases.py"
[ -f "$runner" ] || runner="$top_srcdir/../shared/cases/run_cases.py"
if [ ! -f "$runner" ]; then
  echo "SKIP: run_cases.py not found"
  exit 77
fi
if ! /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null; then
  echo "SKIP: Debian's python3-aiosmtpd is not installed for /usr/bin/python3"
  exit 77
fi
if [ ! -x "$RAMPMAIL" ]; then
  echo "rampmail is not built: $RAMPMAIL" >&2
  exit 99
fi

exec /usr/bin/python3 "$runner" --cases "$cases" --adapter template \
  --template "sh $top_srcdir/tests/acceptance-wrapper.sh {host} {port} {workdir}" \
  ${ACCEPTANCE_OPTS:-}
