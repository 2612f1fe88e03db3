#!/bin/sh
# The Debian package: build it from a copy of the tree with
# dpkg-buildpackage, install it with apt in a throwaway root made by
# debootstrap, check what an administrator gets (sendmail, mailq,
# newaliases, the setgid binary, the group, the user, the folders, the
# timer), submit as an unprivileged user and deliver to a local SMTP
# server as that user and as the timer's user, then remove and
# purge the package and check that nothing is left.
#
# Slow (a build, and apt in the root) and it needs root: it runs only with
# RAMPMAIL_PACKAGE_TEST=1. The base root is made once (about two minutes)
# and kept in $RAMPMAIL_TEST_ROOT_CACHE (/var/cache/rampmail-test-root);
# each run works on a copy. The mirror is the host's (from its apt
# sources), or $RAMPMAIL_DEBIAN_MIRROR. The package is never installed on
# this machine itself, only in the copy.

set -u

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
CACHE=${RAMPMAIL_TEST_ROOT_CACHE:-/var/cache/rampmail-test-root}

skip () {
  echo "SKIP: $*"
  exit 77
}

[ "${RAMPMAIL_PACKAGE_TEST:-}" = 1 ] ||
  skip "slow (builds the package and a root): set RAMPMAIL_PACKAGE_TEST=1 to run it"
[ "$(id -u)" -eq 0 ] || skip "needs root (chroot, dpkg in the test root)"
for tool in dpkg-buildpackage dpkg-deb chroot mount umount mountpoint \
  timeout; do
  command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed"
done
(cd "$top_srcdir" && dpkg-checkbuilddeps >/dev/null 2>&1) ||
  skip "the build dependencies of debian/control are not installed" \
    "(apt-get build-dep ./ or mk-build-deps -i debian/control)"
. /etc/os-release 2>/dev/null || :
SUITE=${RAMPMAIL_DEBIAN_SUITE:-${VERSION_CODENAME:-}}
[ -n "$SUITE" ] || skip "cannot tell this host's Debian release"
ARCH=$(dpkg --print-architecture)
BASE="$CACHE/$SUITE-$ARCH"
if [ ! -f "$BASE/.complete" ]; then
  command -v debootstrap >/dev/null 2>&1 ||
    skip "debootstrap is not installed and no cached root is in $BASE"
fi

# The host's Debian mirror: the first http(s) URI of its apt sources
# that serves "debian" (not -security), else deb.debian.org.
host_mirror () {
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && sed -n 's/^URIs:[[:space:]]*//p' "$f"
  done | tr ' ' '\n'
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] &&
      sed -n 's/^deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]*\).*/\2/p' "$f"
  done
}
MIRROR=${RAMPMAIL_DEBIAN_MIRROR:-$(host_mirror |
  grep -E '^https?://.*/debian/?$' | head -n 1)}
: "${MIRROR:=http://deb.debian.org/debian}"

T=$(mktemp -d "${TMPDIR:-/var/tmp}/rampmail-package.XXXXXX")
R="$T/root"
FAILED=0
PASSED=0
START=$(date +%s)

# Nothing is mounted in the root (dpkg, apt and adduser do without /proc);
# the folder is deleted only if that holds.
cleanup () {
  if [ -n "${SMTPD_PID:-}" ]; then
    kill "$SMTPD_PID" 2>/dev/null
    wait "$SMTPD_PID" 2>/dev/null
  fi
  if grep -q " $T/" /proc/mounts 2>/dev/null; then
    echo "something is still mounted under $T: not deleted"
  elif [ "$FAILED" -eq 0 ] && [ -z "${KEEP_TEST_DIR:-}" ]; then
    rm -rf "$T"
  else
    echo "test files kept in $T"
  fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

. "$top_srcdir/tests/results.sh"

# fatal MESSAGE [LOG]: a step the rest depends on failed.
fatal () {
  FAILED=$((FAILED + 1))
  echo "not ok - $1"
  [ -n "${2:-}" ] && [ -f "$2" ] && tail -n 40 "$2"
  echo "$PASSED passed, $FAILED failed"
  exit 1
}

# has_text TEXT PATTERN: a line of TEXT matches the basic regex PATTERN.
has_text () { printf '%s\n' "$1" | grep -q -- "$2"; }

# fails COMMAND...: COMMAND fails (its output is thrown away).
fails () { ! "$@" >/dev/null 2>&1; }

elapsed () { echo "$(($(date +%s) - START))s"; }

# in_root COMMAND...: COMMAND inside the test root, as root, with a plain
# environment; never more than ten minutes.
in_root () {
  timeout 600 chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

# as_nobody COMMAND...: the same as the user nobody.
as_nobody () {
  timeout 60 chroot --userspec=nobody:nogroup "$R" /usr/bin/env -i \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/nonexistent LANG=C.UTF-8 "$@"
}

# mode_owner PATH: "MODE USER GROUP" of PATH in the root, by name.
mode_owner () {
  in_root stat -c '%a %U %G' "$1" 2>/dev/null
}

# ---- 1. the package ------------------------------------------------------------
# A copy of the tree: what git knows (tracked and new files, no build
# products) when it is a checkout, else the distribution the build tree
# makes.
mkdir -p "$T/build/rampmail"
if [ -d "$top_srcdir/.git" ] && command -v git >/dev/null 2>&1; then
  (cd "$top_srcdir" && git ls-files -z -c -o --exclude-standard |
    tar --null -T - -cf -) | tar -xf - -C "$T/build/rampmail" ||
    fatal "copy the source tree"
else
  make -C "$top_builddir" distdir distdir="$T/build/rampmail" \
    >"$T/distdir.log" 2>&1 || fatal "make distdir" "$T/distdir.log"
fi
chmod -R u+w "$T/build/rampmail"
(cd "$T/build/rampmail" && timeout 1200 dpkg-buildpackage -us -uc -b) \
  >"$T/build.log" 2>&1 || fatal "dpkg-buildpackage" "$T/build.log"
echo "# package built in $(elapsed)"
DEB=$(ls "$T"/build/rampmail_*.deb 2>/dev/null | head -n 1)
[ -f "$DEB" ] || fatal "dpkg-buildpackage made no rampmail_*.deb"

fields=$(dpkg-deb -f "$DEB" Provides Conflicts Replaces | tr '\n' ' ')
expect_eq "the package provides, conflicts with and replaces the MTAs" \
  "Provides: mail-transport-agent Conflicts: mail-transport-agent Replaces: mail-transport-agent " \
  "$fields"
if command -v lintian >/dev/null 2>&1; then
  lintian "$DEB" >"$T/lintian.log" 2>&1
  check "lintian finds no errors" \
    sh -c "! grep -q '^E: ' '$T/lintian.log'"
  grep -E '^[EW]: ' "$T/lintian.log" | sed 's/^/# /'
else
  echo "# lintian is not installed: not checked"
fi

# ---- 2. the throwaway root -------------------------------------------------------
if [ ! -f "$BASE/.complete" ]; then
  mkdir -p "$CACHE" || fatal "create $CACHE"
  NEW=$(mktemp -d "$CACHE/.new.XXXXXX") || fatal "create a folder in $CACHE"
  chmod 0755 "$NEW"
  echo "# debootstrap --variant=minbase $SUITE from $MIRROR (once)"
  if ! timeout 1800 debootstrap --variant=minbase "$SUITE" "$NEW" "$MIRROR" \
    >"$T/debootstrap.log" 2>&1; then
    # debootstrap may leave its own mounts (proc, sys) on failure.
    for m in proc sys dev/pts dev; do
      mountpoint -q "$NEW/$m" 2>/dev/null && umount "$NEW/$m"
    done
    grep -q " $NEW/" /proc/mounts || rm -rf "$NEW"
    fatal "debootstrap $SUITE" "$T/debootstrap.log"
  fi
  touch "$NEW/.complete"
  rm -rf "$BASE"
  mv "$NEW" "$BASE" || fatal "store the root in $BASE"
  echo "# base root made in $(elapsed)"
fi
cp -a "$BASE" "$R" || fatal "copy the cached root"
rm -f "$R/.complete"
# The root's / comes from a mktemp folder (0700): others must traverse it.
chmod 0755 "$R"

# Services never start in the root; apt reaches the mirror with the host's
# resolver.
printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
chmod 0755 "$R/usr/sbin/policy-rc.d"
cp -L /etc/resolv.conf "$R/etc/resolv.conf" 2>/dev/null || :
printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$R/etc/apt/sources.list"

cp "$DEB" "$R/tmp/" || fatal "copy the package into the root"
DEB_IN_ROOT="/tmp/$(basename "$DEB")"
in_root apt-get -q update >"$T/apt.log" 2>&1 ||
  fatal "apt-get update in the root" "$T/apt.log"
in_root apt-get -q install -y --no-install-recommends "$DEB_IN_ROOT" \
  >>"$T/apt.log" 2>&1 || fatal "apt-get install rampmail in the root" "$T/apt.log"
echo "# installed in the root in $(elapsed)"
check "the package is installed" \
  sh -c "chroot '$R' dpkg-query -W -f='\${Status}' rampmail | grep -q 'install ok installed'"

# From here on, no name server: the FQDN of this host comes from /etc/hosts
# and nothing leaves the machine.
printf 'nameserver 127.0.0.1\n' >"$R/etc/resolv.conf"
printf '127.0.0.1 localhost\n127.0.1.1 %s.example.test %s\n' \
  "$(hostname)" "$(hostname)" >"$R/etc/hosts"

# ---- 3. what the administrator gets -------------------------------------------
for p in /usr/sbin/sendmail /usr/bin/mailq /usr/bin/newaliases \
  /usr/lib/sendmail; do
  check "$p exists" test -e "$R$p"
done
version=$(in_root /usr/sbin/sendmail --version 2>&1)
check "sendmail --version names rampmail ($version)" \
  has_text "$version" '^rampmail '
out=$(in_root /usr/bin/mailq 2>&1)
expect_eq "mailq: the empty queue" "Mail queue is empty" "$out"
out=$(in_root /usr/bin/newaliases 2>&1)
expect_eq "newaliases succeeds" 0 $?
echo "# newaliases: $out"
out=$(in_root rampmail --check-config 2>&1)
expect_eq "the installed configuration is valid" 0 $?
echo "# $out"

expect_eq "/usr/bin/rampmail: setgid rampmail" "2755 root rampmail" \
  "$(mode_owner /usr/bin/rampmail)"
expect_eq "/var/spool/rampmail: root:rampmail 2770" "2770 root rampmail" \
  "$(mode_owner /var/spool/rampmail)"
expect_eq "/var/lib/rampmail: root:rampmail 2770" "2770 root rampmail" \
  "$(mode_owner /var/lib/rampmail)"
expect_eq "/etc/rampmail/rampmail.conf: root:rampmail 0640" \
  "640 root rampmail" "$(mode_owner /etc/rampmail/rampmail.conf)"
check "a system group rampmail" \
  sh -c "chroot '$R' getent group rampmail | awk -F: '\$3 < 1000 { f = 1 } END { exit !f }'"
check "a system user rampmail in the group, without a shell" \
  sh -c "chroot '$R' getent passwd rampmail |
    awk -F: -v g=\"\$(chroot '$R' getent group rampmail | cut -d: -f3)\" \
      '\$3 < 1000 && \$4 == g && \$7 ~ /(nologin|false)\$/ { f = 1 } END { exit !f }'"
check "the queue service and timer are installed" \
  sh -c "ls '$R'/lib/systemd/system/rampmail-queue.service \
    '$R'/lib/systemd/system/rampmail-queue.timer >/dev/null 2>&1 ||
    ls '$R'/usr/lib/systemd/system/rampmail-queue.service \
    '$R'/usr/lib/systemd/system/rampmail-queue.timer >/dev/null 2>&1"
check "the timer is enabled" \
  test -L "$R/etc/systemd/system/timers.target.wants/rampmail-queue.timer"

# An unprivileged user submits (queue only, no delivery: nothing is sent)
# and cannot read the queue, the state or the configuration.
printf 'From: nobody@example.test\nTo: rcpt@example.net\nSubject: package test\n\nhello\n' |
  as_nobody /usr/sbin/sendmail -odq -t >"$T/submit.log" 2>&1
expect_eq "nobody submits with sendmail -odq -t" 0 $?
sed 's/^/# /' "$T/submit.log"
# An 8-bit Subject needs the MIME module (GMime), loaded from the plugin
# folder only for such messages.
check "the MIME module is installed with the plugins" \
  sh -c "ls '$R'/usr/lib/*/rampmail/plugins/mime.so >/dev/null 2>&1"
printf 'From: nobody@example.test\nTo: rcpt@example.net\nSubject: caf\303\251\n\nhello\n' |
  as_nobody /usr/sbin/sendmail -odq -t >"$T/submit8.log" 2>&1
expect_eq "nobody submits an 8-bit Subject (the MIME module loads)" 0 $?
sed 's/^/# /' "$T/submit8.log"
out=$(in_root /usr/bin/mailq 2>&1)
check "mailq lists the message" has_text "$out" 'rcpt@example\.net'
check "nobody cannot list the queue folder" \
  fails as_nobody ls /var/spool/rampmail
check "nobody cannot read the configuration" \
  fails as_nobody cat /etc/rampmail/rampmail.conf
others=$(in_root find /var/spool/rampmail /var/lib/rampmail -perm /o=rwx 2>/dev/null)
expect_eq "nothing in the queue or the state is open to others" "" "$others"

# The timer's user and the submitters share the queue and the state:
# nobody delivers at once (-odi), then the unit's user (rampmail:rampmail)
# runs the queue, then nobody delivers again. The server is tests/smtpd.py
# on 127.0.0.1 (Debian's python3-aiosmtpd, outside the root); every
# delivery updates the per-server counts in the state database.
SMTPD_PID=""
if /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null; then
  /usr/bin/python3 "$top_srcdir/tests/smtpd.py" --port-file "$T/mx.port" \
    --maildir "$T/mx.mail" --log "$T/mx.log" 2>>"$T/mx.err" &
  SMTPD_PID=$!
  i=0
  while [ ! -s "$T/mx.port" ] && [ $i -lt 100 ]; do
    i=$((i + 1))
    sleep 0.05
  done
fi
if [ -s "$T/mx.port" ]; then
  printf '[rampmail]\ndomain = example.test\n\n[server local]\nhost = 127.0.0.1\nport = %s\ntls = none\nwarmup = none\n' \
    "$(cat "$T/mx.port")" >"$R/etc/rampmail/rampmail.conf"
  # arrived ADDR: a message to ADDR reached the server.
  arrived () { cat "$T"/mx.mail/*.json 2>/dev/null | grep -q -F "<$1>" ||
    cat "$T"/mx.mail/*.json 2>/dev/null | grep -q -F "\"$1\""; }
  # no_access_error LOG: LOG shows no file it could not write or read.
  no_access_error () {
    ! grep -q -i -E 'readonly|read-only|permission denied' "$1"
  }
  # as_runner COMMAND...: as the unit's user and group.
  as_runner () {
    timeout 60 chroot --userspec=rampmail:rampmail "$R" /usr/bin/env -i \
      PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/lib/rampmail \
      LANG=C.UTF-8 "$@"
  }
  # 1. The unit's user sends the -odq message of above; the state
  # database is new, and the rampmail user's.
  as_runner /usr/bin/rampmail -q >"$T/run1.log" 2>&1
  expect_eq "a queue run as the rampmail user" 0 $?
  sed 's/^/# /' "$T/run1.log"
  check "it sent the message nobody queued" arrived rcpt@example.net
  # 2. nobody delivers at once: the state the rampmail user made.
  printf 'From: nobody@example.test\nTo: second@example.net\nSubject: package test 2\n\nhello\n' |
    as_nobody /usr/sbin/sendmail -odi -t >"$T/submit2.log" 2>&1
  expect_eq "nobody delivers with sendmail -odi -t" 0 $?
  sed 's/^/# /' "$T/submit2.log"
  check "nobody could use the rampmail user's state" \
    no_access_error "$T/submit2.log"
  check "nobody's message arrived" arrived second@example.net
  # 3. The unit's user again: what nobody's delivery wrote.
  as_runner /usr/bin/rampmail -q >"$T/run2.log" 2>&1
  expect_eq "a second queue run as the rampmail user" 0 $?
  sed 's/^/# /' "$T/run2.log"
  check "the rampmail user could use what nobody wrote" \
    no_access_error "$T/run2.log"
  expect_eq "the queue is empty" "Mail queue is empty" \
    "$(in_root /usr/bin/mailq 2>&1)"
  in_root ls -l /var/spool/rampmail /var/lib/rampmail 2>&1 | sed 's/^/# /'
else
  echo "# python3-aiosmtpd is not installed: the shared queue and state are not checked"
fi
if [ -n "$SMTPD_PID" ]; then
  kill "$SMTPD_PID" 2>/dev/null
  wait "$SMTPD_PID" 2>/dev/null
  SMTPD_PID=""
fi

# ---- 4. remove, purge -------------------------------------------------------------
in_root dpkg -r rampmail >"$T/remove.log" 2>&1
expect_eq "dpkg -r rampmail" 0 $?
check "sendmail is gone after remove" sh -c "! test -e '$R/usr/sbin/sendmail'"
check "mailq is gone after remove" sh -c "! test -e '$R/usr/bin/mailq' && ! test -L '$R/usr/bin/mailq'"
check "the configuration stays after remove" test -f "$R/etc/rampmail/rampmail.conf"
check "the queue stays after remove" test -d "$R/var/spool/rampmail"
in_root dpkg -P rampmail >"$T/purge.log" 2>&1
expect_eq "dpkg -P rampmail" 0 $?
sed 's/^/# /' "$T/purge.log"
check "dpkg no longer knows rampmail" \
  sh -c "! chroot '$R' dpkg-query -W -f='\${Status}' rampmail 2>/dev/null | grep -q 'installed'"
left=$(cd "$R" && find etc usr lib var -name '*rampmail*' \
  ! -path 'var/cache/apt/*' ! -path 'var/lib/dpkg/*' ! -path 'var/log/*' \
  ! -path 'var/lib/apt/*' 2>/dev/null | sort | tr '\n' ' ')
expect_eq "no rampmail file is left after purge" "" "$left"
check "the user rampmail is gone" sh -c "! chroot '$R' getent passwd rampmail >/dev/null"
check "the group rampmail is gone" sh -c "! chroot '$R' getent group rampmail >/dev/null"
check "no dpkg-statoverride is left" \
  sh -c "! chroot '$R' dpkg-statoverride --list | grep -q rampmail"

echo "# finished in $(elapsed)"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
