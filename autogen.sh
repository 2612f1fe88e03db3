#!/bin/sh
# Regenerate the build system from configure.ac and Makefile.am.
set -e
cd "$(dirname "$0")"
mkdir -p m4 build-aux
autoreconf --install --force
# automake does not install the TAP driver on its own.
for d in /usr/share/automake-*; do
  if [ -f "$d/tap-driver.sh" ]; then
    cp -f "$d/tap-driver.sh" build-aux/tap-driver.sh
    break
  fi
done
test -f build-aux/tap-driver.sh || { echo "autogen.sh: tap-driver.sh not found (install automake)" >&2; exit 1; }
