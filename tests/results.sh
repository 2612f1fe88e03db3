# Counting test results, shared by every shell test (sourced):
# check DESCRIPTION COMMAND..., expect_eq DESCRIPTION WANTED GOT, and
# finish, which prints the tally and fails if anything failed.

FAILED=${FAILED:-0}
PASSED=${PASSED:-0}

check () {
  # check DESCRIPTION COMMAND...
  desc=$1
  shift
  if "$@"; then
    PASSED=$((PASSED + 1))
    echo "ok - $desc"
  else
    FAILED=$((FAILED + 1))
    echo "not ok - $desc"
  fi
}

expect_eq () {
  # expect_eq DESCRIPTION WANTED GOT
  if [ "$2" = "$3" ]; then
    PASSED=$((PASSED + 1))
    echo "ok - $1"
  else
    FAILED=$((FAILED + 1))
    echo "not ok - $1: wanted '$2', got '$3'"
  fi
}

finish () {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
