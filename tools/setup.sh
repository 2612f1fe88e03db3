#!/bin/sh
# Sets up a fresh Debian 12 machine for rampmail and builds it in the tree:
# installs the build and test dependencies (as root, or through sudo), then
# runs autogen.sh, configure and make.
set -eu
cd "$(dirname "$0")/.."

PACKAGES="autoconf automake build-essential clang clang-format cppcheck
  debhelper debianutils debootstrap dpkg-dev fakeroot faketime git
  git-email libclang-rt-14-dev libesmtp-dev libglib2.0-dev
  libgmime-3.0-dev libltdl-dev libsqlite3-dev libssl-dev libtool
  libtool-bin lintian mandoc mutt openssl php-cli pkg-config python3
  python3-aiosmtpd valgrind"

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "ok installed" \
    || missing="$missing $p"
done
if [ -n "$missing" ] || [ -n "${CI:-}" ]; then
  echo "setup: installing$missing"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $PACKAGES
fi

if [ ! -x configure ] || [ configure.ac -nt configure ] \
   || [ Makefile.am -nt Makefile.in ]; then
  ./autogen.sh
fi
if [ ! -f Makefile ] || [ configure -nt config.status ]; then
  ./configure --sysconfdir=/etc --localstatedir=/var ${CONFIGURE_FLAGS:-}
fi
make -j"$(nproc)"
