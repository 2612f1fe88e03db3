#!/bin/sh
# README's second command: set up, build and run every test (make check,
# which includes the acceptance cases of ../shared/cases, then make
# distcheck, then the suite again under -Werror, ASan and UBSan), then the
# gates: clang-format, cppcheck, valgrind memcheck over some integration
# tests and a short run of the fuzz targets. Each stage or gate counts as
# one test. Ends with the line "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.."
if ! sh tools/setup.sh; then
  echo "0 passed, 1 failed"
  exit 1
fi

# The Debian package test (a package build and a debootstrap root) runs
# once, here, as root; distcheck and the sanitizer stage skip it.
RAMPMAIL_PACKAGE_TEST=${RAMPMAIL_PACKAGE_TEST:-1} make -j2 check \
  > check.out 2>&1
check_rc=$?
cat check.out
count () { sed -n "s/^# $1: *\([0-9][0-9]*\).*/\1/p" check.out | tail -n 1; }
passed=$(count PASS); failed=$(count FAIL); errors=$(count ERROR)
xpass=$(count XPASS); skipped=$(count SKIP)
passed=${passed:-0}; failed=$(( ${failed:-0} + ${errors:-0} + ${xpass:-0} ))
if [ $check_rc -ne 0 ] && [ $failed -eq 0 ]; then
  failed=1
  cat test-suite.log 2>/dev/null | tail -n 50
fi
# What failed is printed again just before the last line (see the end),
# where a CI viewer that keeps only the tail still shows it.
summary=$(mktemp "${TMPDIR:-/tmp}/rampmail-summary.XXXXXX")
# failed_checks LOG: a TAP log's failed checks, each with the lines after it.
failed_checks () {
  grep -E -A4 '^(not ok|Bail out)' "$1" | head -n 40
}
[ $failed -ne 0 ] && for f in tests/*.log; do
  if grep -q -E '^(FAIL|ERROR)' "${f%.log}.trs" 2>/dev/null; then
    echo "== $f"; tail -n 40 "$f"
    { echo "== make check: $f"; failed_checks "$f"; tail -n 5 "$f"; } \
      >> "$summary"
  fi
done

if [ -z "${SKIP_DISTCHECK:-}" ]; then
  if make -j2 distcheck > distcheck.out 2>&1; then
    echo "PASS: make distcheck"
    passed=$((passed + 1))
  else
    tail -n 60 distcheck.out
    echo "FAIL: make distcheck"
    failed=$((failed + 1))
  fi
fi

# The whole suite again, built with -Werror, ASan and UBSan (leaks fail),
# from the distribution tarball so that the tree's own build is untouched.
if [ -z "${SKIP_SANITIZERS:-}" ]; then
  cases=$(cd .. && pwd)/shared/cases
  san=$(mktemp -d "${TMPDIR:-/tmp}/rampmail-san.XXXXXX")
  if { ls rampmail-*.tar.gz >/dev/null 2>&1 || make dist >/dev/null; } \
     && tar -C "$san" -xzf "$(ls rampmail-*.tar.gz | head -n 1)" \
     && (cd "$san"/rampmail-* \
         && ./configure -q --enable-sanitizers CFLAGS="-O1 -g -Werror" \
         && make -j2 >/dev/null \
         && ASAN_OPTIONS=detect_leaks=1:verify_asan_link_order=0 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            RAMPMAIL_CASES_DIR="$cases" make -j2 check) > sanitizers.out 2>&1
  then
    echo "PASS: make check with -Werror, ASan and UBSan"
    passed=$((passed + 1))
  else
    grep -E '^(FAIL|ERROR)|ERROR: (Address|Leak)Sanitizer|runtime error' \
      sanitizers.out | head -n 40 | tee -a "$summary"
    tail -n 30 sanitizers.out
    for f in "$san"/rampmail-*/tests/*.log; do
      grep -q -E '^(FAIL|ERROR)' "${f%.log}.trs" 2>/dev/null &&
        { echo "== sanitizers: ${f##*/}"; failed_checks "$f"; } >> "$summary"
    done
    echo "FAIL: make check with -Werror, ASan and UBSan"
    failed=$((failed + 1))
  fi
  rm -rf "$san"
fi

# clang-format (.clang-format) over every C file of the project.
if [ -z "${SKIP_FORMAT:-}" ]; then
  if clang-format --dry-run -Werror src/*.c src/*.h plugins/*.c \
       plugins/*.h include/rampmail/*.h tests/*.c fuzz/*.c \
       < /dev/null > clang-format.out 2>&1; then
    echo "PASS: clang-format"
    passed=$((passed + 1))
  else
    head -n 40 clang-format.out
    clang-format --version
    echo "FAIL: clang-format"
    failed=$((failed + 1))
  fi
fi

# cppcheck over src/ and plugins/. One known false positive: G_DEFINE_QUARK
# is a macro that cppcheck's gtk library lacks.
if [ -z "${SKIP_CPPCHECK:-}" ]; then
  if cppcheck -q --error-exitcode=1 --enable=warning,portability \
       --inline-suppr --library=gtk -Iinclude -Isrc \
       --suppress=unknownMacro:src/errors.c \
       src plugins > cppcheck.out 2>&1; then
    echo "PASS: cppcheck"
    passed=$((passed + 1))
  else
    head -n 60 cppcheck.out
    echo "FAIL: cppcheck"
    failed=$((failed + 1))
  fi
fi

# valgrind memcheck over some of the integration tests (tests/lib.sh and
# tests/acceptance-wrapper.sh run rampmail under valgrind with
# RAMPMAIL_VALGRIND=1): a test that fails or a report in the log folder
# fails the stage. acceptance.sh runs beside the others.
if [ -z "${SKIP_VALGRIND:-}" ]; then
  vgdir=$(mktemp -d "${TMPDIR:-/tmp}/rampmail-vg.XXXXXX")
  mkdir "$vgdir/logs"
  vg_tests () {
    for t in "$@"; do
      top_srcdir=$(pwd) top_builddir=$(pwd) RAMPMAIL=$(pwd)/rampmail \
        RAMPMAIL_PLUGIN_BUILD_DIR=$(pwd)/plugins/.libs \
        RAMPMAIL_CASES_DIR=$(cd .. && pwd)/shared/cases \
        RAMPMAIL_VALGRIND=1 RAMPMAIL_VALGRIND_LOGDIR="$vgdir/logs" \
        timeout 900 sh "tests/$t.sh" > "$vgdir/$t.out" 2>&1
      rc=$?
      [ $rc -eq 0 ] || [ $rc -eq 77 ] || echo "$t" >> "$vgdir/failed"
    done
  }
  vg_tests acceptance &
  vg_pid=$!
  vg_tests relay failures config mime
  wait "$vg_pid"
  reports=$(find "$vgdir/logs" -type f -size +0 | head -n 5)
  if command -v valgrind >/dev/null && [ ! -s "$vgdir/failed" ] \
     && [ -z "$reports" ]; then
    echo "PASS: valgrind memcheck (relay, failures, config, mime, acceptance)"
    passed=$((passed + 1))
  else
    for t in $(cat "$vgdir/failed" 2>/dev/null); do
      echo "== $t under valgrind" | tee -a "$summary"
      grep -E '^not ok|FAIL' "$vgdir/$t.out" | head -n 20 | tee -a "$summary"
      tail -n 20 "$vgdir/$t.out"
    done
    for r in $reports; do echo "== $r"; head -n 60 "$r"; done
    echo "FAIL: valgrind memcheck"
    failed=$((failed + 1))
  fi
  rm -rf "$vgdir"
fi

# A short run of each libFuzzer target of fuzz/ (needs clang).
if [ -z "${SKIP_FUZZ:-}" ]; then
  sh fuzz/run.sh "${FUZZ_SECONDS:-20}" > fuzz.out 2>&1
  rc=$?
  cat fuzz.out
  if [ $rc -eq 0 ]; then
    echo "PASS: fuzz targets (${FUZZ_SECONDS:-20}s each)"
    passed=$((passed + 1))
  elif [ $rc -eq 77 ]; then
    echo "SKIP: fuzz targets (clang with libFuzzer is not installed)"
    skipped=$((${skipped:-0} + 1))
  else
    echo "FAIL: fuzz targets"
    failed=$((failed + 1))
  fi
fi

if [ -s "$summary" ]; then
  echo "== what failed, again:"
  cat "$summary"
fi
rm -f "$summary"
echo "${passed} passed, ${failed} failed, ${skipped:-0} skipped"
[ $failed -eq 0 ]
