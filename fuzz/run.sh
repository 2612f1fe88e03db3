#!/bin/sh
# Builds the libFuzzer targets of fuzz/ with clang (ASan and UBSan) in a
# temporary folder and runs each for SECONDS (default 60) on a copy of its
# seed corpus in fuzz/corpus/TARGET. Prints executions and crashes per
# target; exits 1 if a target crashed or failed to build, 77 if clang or
# its fuzzer runtime (Debian's clang and libclang-rt-14-dev) is missing.
#
#   sh fuzz/run.sh [SECONDS] [TARGET...]     TARGET: intake address ...
#
# FUZZ_KEEP=DIR keeps the build, logs and grown corpora in DIR. Crash
# inputs are copied to ./fuzz-crashes/ of the current folder.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-intake address cmdline config}
CC_FUZZ=${CC_FUZZ:-clang}

if ! command -v "$CC_FUZZ" >/dev/null 2>&1; then
  echo "fuzz: $CC_FUZZ not found (install Debian's clang and libclang-rt-14-dev)"
  exit 77
fi
if ! pkg-config --exists glib-2.0 gmime-3.0; then
  echo "fuzz: pkg-config cannot find glib-2.0 and gmime-3.0"
  exit 77
fi

if [ -n "${FUZZ_KEEP:-}" ]; then
  work=$FUZZ_KEEP
  mkdir -p "$work"
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/rampmail-fuzz.XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi
trap 'exit 1' INT TERM

echo 'int LLVMFuzzerTestOneInput (const char *d, unsigned long n);
int LLVMFuzzerTestOneInput (const char *d, unsigned long n)
{ (void) d; (void) n; return 0; }' > "$work/probe.c"
if ! "$CC_FUZZ" -fsanitize=fuzzer,address,undefined "$work/probe.c" \
     -o "$work/probe" > "$work/probe.log" 2>&1; then
  cat "$work/probe.log"
  echo "fuzz: $CC_FUZZ cannot link -fsanitize=fuzzer (install libclang-rt-14-dev)"
  exit 77
fi

# The sources need only a few of configure's results.
cat > "$work/config.h" <<EOC
#define _GNU_SOURCE 1
#define PACKAGE "rampmail"
#define PACKAGE_NAME "rampmail"
#define PACKAGE_VERSION "fuzz"
#define VERSION "fuzz"
#define HAVE_SYSEXITS_H 1
EOC

CFLAGS_FUZZ="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
  -fno-sanitize-recover=undefined -I$work -I$top/include -I$top/src
  -DRM_SYSCONFDIR=\"$work/etc\" -DRM_PLUGINDIR=\"$work/plugins\"
  -DRM_LOCALSTATEDIR=\"$work/var\" $(pkg-config --cflags glib-2.0 gmime-3.0)"
LIBS_FUZZ="$(pkg-config --libs glib-2.0 gmime-3.0) -lltdl"

sources_of () {
  case $1 in
    intake) echo src/intake.c src/mime.c src/mime-gmime.c src/modules.c src/address.c \
      src/errors.c ;;
    address) echo src/address.c src/errors.c ;;
    cmdline) echo src/cmdline.c src/address.c src/errors.c ;;
    config) echo src/conf.c src/errors.c ;;
    *) return 1 ;;
  esac
}

status=0
total_crashes=0
for t in $targets; do
  if ! srcs=$(sources_of "$t"); then
    echo "FAIL: fuzz-$t: no such target"; status=1; continue
  fi
  files="$here/fuzz-$t.c"
  for s in $srcs; do files="$files $top/$s"; done
  # shellcheck disable=SC2086
  if ! "$CC_FUZZ" $CFLAGS_FUZZ $files $LIBS_FUZZ -o "$work/fuzz-$t" \
       > "$work/build-$t.log" 2>&1; then
    cat "$work/build-$t.log"
    echo "FAIL: fuzz-$t: build"; status=1; continue
  fi
  mkdir -p "$work/corpus-$t" "$work/crash-$t"
  [ -d "$here/corpus/$t" ] && cp "$here/corpus/$t"/* "$work/corpus-$t/" 2>/dev/null
  (cd "$work/crash-$t" \
   && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$work/fuzz-$t" -max_total_time="$secs" -rss_limit_mb=2048 \
        -timeout=10 -print_final_stats=1 -artifact_prefix="$work/crash-$t/" \
        "$work/corpus-$t" > "$work/log-$t" 2>&1)
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log-$t" | tail -n 1)
  crashes=$(ls "$work/crash-$t" 2>/dev/null | grep -c -E '^(crash|leak|timeout|oom)-')
  if [ $rc -ne 0 ] || [ "$crashes" -gt 0 ]; then
    grep -E -A 30 '^==[0-9]+==ERROR|runtime error|deadly signal' "$work/log-$t" | head -n 60
    mkdir -p fuzz-crashes
    cp "$work/crash-$t"/* fuzz-crashes/ 2>/dev/null
    echo "FAIL: fuzz-$t: ${secs}s, ${execs:-?} executions, ${crashes} crash(es), exit $rc (inputs in ./fuzz-crashes/)"
    status=1
    total_crashes=$((total_crashes + crashes))
  else
    echo "PASS: fuzz-$t: ${secs}s, ${execs:-?} executions, 0 crashes"
  fi
done
exit $status
