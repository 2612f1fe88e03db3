#!/bin/sh
# README's second command: set up, build and run every test (make check,
# which includes the acceptance cases of ../shared/cases, then make
# distcheck, then the suite again under -Werror, ASan and UBSan). Ends with
# the line "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
if ! sh tools/setup.sh; then
  echo "0 passed, 1 failed"
  exit 1
fi

make -j2 check > check.out 2>&1
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
[ $failed -ne 0 ] && for f in tests/*.log; do
  grep -q -E '^(FAIL|ERROR)' "${f%.log}.trs" 2>/dev/null && { echo "== $f"; tail -n 40 "$f"; }
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
      sanitizers.out | head -n 40
    tail -n 30 sanitizers.out
    echo "FAIL: make check with -Werror, ASan and UBSan"
    failed=$((failed + 1))
  fi
  rm -rf "$san"
fi

echo "${passed} passed, ${failed} failed, ${skipped:-0} skipped"
[ $failed -eq 0 ]
