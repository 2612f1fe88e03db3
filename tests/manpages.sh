#!/bin/sh
# The manuals: rampmail(8) and rampmail.conf(5) must format without a
# single warning under mandoc -Tlint and groff -ww, and the list of
# accepted-and-ignored flags in rampmail(8) must be the one of the
# ignored_flags table in src/cmdline.c, entry for entry.
set -u

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
PAGES="$top_srcdir/doc/rampmail.8 $top_srcdir/doc/rampmail.conf.5"
T=$(mktemp -d "${TMPDIR:-/tmp}/rampmail-man.XXXXXX")
trap 'rm -rf "$T"' EXIT
FAILED=0
PASSED=0

have () { command -v "$1" >/dev/null 2>&1; }

if ! have mandoc && ! have groff; then
  echo "SKIP: neither mandoc nor groff is installed (apt-get install mandoc)"
  exit 77
fi

result () {
  # result DESCRIPTION OK [DETAILS-FILE]
  if [ "$2" = yes ]; then
    PASSED=$((PASSED + 1))
    echo "ok - $1"
  else
    FAILED=$((FAILED + 1))
    echo "not ok - $1"
    [ $# -lt 3 ] || sed 's/^/#   /' "$3"
  fi
}

for page in $PAGES; do
  name=$(basename "$page")
  if [ ! -f "$page" ]; then
    echo "not found" > "$T/missing"
    result "$name exists" no "$T/missing"
    continue
  fi

  if have mandoc; then
    # mandoc exits 0 and prints nothing when no warning or error is found.
    if mandoc -Tlint -W warning "$page" > "$T/lint" 2>&1 \
       && [ ! -s "$T/lint" ]; then
      result "$name: mandoc -Tlint -W warning is clean" yes
    else
      result "$name: mandoc -Tlint -W warning is clean" no "$T/lint"
    fi
  fi

  if have groff; then
    # -z formats without writing; warnings still go to standard error.
    if groff -ww -mandoc -Tutf8 -z "$page" > "$T/groff" 2>&1 \
       && [ ! -s "$T/groff" ]; then
      result "$name: groff -ww -mandoc is clean" yes
    else
      result "$name: groff -ww -mandoc is clean" no "$T/groff"
    fi
  fi
done

# ---- the accepted-and-ignored flags ------------------------------------------
# The table's "shown" strings (NULL entries are shown with the one before).
sed -n '/^static const IgnoredFlag ignored_flags\[\] = {/,/^};/p' \
    "$top_srcdir/src/cmdline.c" |
  sed -n 's/^ *{ "[A-Za-z0-9]*", [A-Z]*, "\([^"]*\)".*/\1/p' > "$T/table"

# Formatters may embolden with "c BACKSPACE c": that goes.
BS=$(printf '\b')
# The tags of the ".Ss Accepted and ignored flags" list, rendered as plain
# text: "-Am, -Ac", "-h N", "-O option=value"...
sed -n '/^\.Ss Accepted and ignored flags/,/^\.Ss /p' \
    "$top_srcdir/doc/rampmail.8" > "$T/section.8"
awk 'BEGIN { print ".Dd January 1, 2000"; print ".Dt T 8"; print ".Os";
             print ".Sh T"; print ".Bl -tag -width Ds" }
     /^\.It / { print; print "x" }
     END { print ".El" }' "$T/section.8" > "$T/tags.8"
if have mandoc; then
  mandoc -Tascii "$T/tags.8" 2>/dev/null
else
  groff -mandoc -Tascii -P-c -P-b -P-u "$T/tags.8" 2>/dev/null
fi | sed "s/.$BS//g" | sed -n 's/^ *\(-.*\)$/\1/p' |
  sed 's/[[:space:]]*x$//' > "$T/page"

if [ -s "$T/table" ] && cmp -s "$T/table" "$T/page"; then
  result "rampmail.8 lists the $(($(wc -l < "$T/table"))) ignored flags of src/cmdline.c, in order" yes
else
  diff "$T/table" "$T/page" > "$T/diff" 2>&1
  result "rampmail.8 lists the ignored flags of src/cmdline.c, in order (< table, > page)" no "$T/diff"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
