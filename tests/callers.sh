#!/bin/sh
# Real callers, end to end: programs from Debian that send mail through
# /usr/sbin/sendmail, run against rampmail "installed" in a prefix of the
# test's folder, with a capture server on loopback. Each part checks the
# envelope and the message that arrived:
#   php       php-cli's mail() with sendmail_path, extra headers and -f
#   git       git send-email with an absolute --smtp-server
#   mutt      mutt (or neomutt) in batch mode
#   cron      crontab lines run the way Debian's cron runs them and mails
#             their output to MAILTO (run-parts from debianutils)
#   -bs       a Symfony-Mailer-like client speaking SMTP on sendmail -bs,
#             also in the default (background) delivery mode
# A part whose program is missing is skipped with the reason; the test
# exits 77 only if every part was skipped.
. "${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}/tests/lib.sh"

TO=60   # seconds any one caller may take
LOGIN=$(id -un)
RAN=0

start_server mx
write_config -- mx
printf 'root: admin@example.org\n' > "$T/aliases"

# The prefix: sbin/sendmail is what the callers run; it adds only -C.
SENDMAIL="$T/prefix/sbin/sendmail"
mkdir -p "$T/prefix/sbin" "$T/home"
cat > "$SENDMAIL" <<EOF
#!/bin/sh
exec "$RAMPMAIL" -C "$T/rampmail.conf" "\$@"
EOF
chmod 755 "$SENDMAIL"

# msg N WHAT [NAME]: a fact about message N (1-based) that mx stored:
#   envelope  "sender rcpt rcpt...", recipients sorted
#   options   the MAIL parameters, upper-cased, space-separated
#   crlf      "ok", or what breaks the rule that every line ends in CRLF
#   field     the unfolded values of header field NAME, one a line
#   body      the body (after the first empty line), CRLF made LF
msg () {
  "$PY" - "$T/mx.mail" "$@" <<'EOF'
import json, re, sys
folder, n, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
base = "%s/%04d" % (folder, n)
try:
    meta = json.load(open(base + ".json"))
    data = open(base + ".eml", "rb").read()
except OSError:
    print("(no message %d)" % n)
    sys.exit(0)
head, sep, body = data.partition(b"\r\n\r\n")
out = sys.stdout.buffer
if what == "envelope":
    print(" ".join([meta["mail_from"]] + sorted(meta["rcpt_tos"])))
elif what == "options":
    print(" ".join(o.upper() for o in meta["mail_options"]))
elif what == "crlf":
    bad = [m.start() for m in re.finditer(rb"\r(?!\n)|(?<!\r)\n", data)]
    print("ok" if not bad else "bare CR or LF at offsets %s" % bad[:5])
elif what == "field":
    name = sys.argv[4].lower().encode()
    unfolded = re.sub(rb"\r\n(?=[ \t])", b"", head + b"\r\n")
    for line in unfolded.split(b"\r\n"):
        key, colon, value = line.partition(b":")
        if colon and key.strip().lower() == name:
            out.write(value.strip() + b"\n")
elif what == "body":
    out.write(body.replace(b"\r\n", b"\n"))
EOF
}

# arrived BEFORE: the server got exactly one message more than BEFORE.
arrived () { [ "$(count_mail mx)" -eq $(($1 + 1)) ]; }

# skip PART REASON
skip () { echo "# SKIP: $1: $2"; }

# ---- 1. php-cli's mail() ------------------------------------------------------

if command -v php >/dev/null 2>&1; then
  RAN=$((RAN + 1))
  n=$(count_mail mx)
  # mail() writes To and Subject, the extra headers and the message to
  # "sendmail_path additional_parameters" through a pipe.
  timeout $TO php -d sendmail_path="$SENDMAIL -t -i" -r '
    $body = "Hello from PHP.\n.a line that starts with a dot\n.\n\nlast line\n";
    $headers = "From: Shop <shop@example.org>\r\n"
             . "Cc: Office <office@example.net>\r\n"
             . "Bcc: hidden@example.net\r\n"
             . "X-Mailer: PHP/" . PHP_VERSION;
    exit(mail("buyer@example.net", "PHP mail() order", $body, $headers,
              "-fbounce@example.org") ? 0 : 1);' >"$T/php.out" 2>&1
  expect_eq "php mail(): returns true" 0 $?
  check "php mail(): one message arrived" arrived "$n"
  n=$((n + 1))
  expect_eq "php mail(): envelope: -f sender, To + Cc + Bcc" \
    "bounce@example.org buyer@example.net hidden@example.net office@example.net" \
    "$(msg $n envelope)"
  expect_eq "php mail(): no Bcc field in the data" "" "$(msg $n field Bcc)"
  check "php mail(): Bcc address absent from the data" \
    sh -c "! grep -q hidden '$T/mx.mail/$(printf %04d $n).eml'"
  expect_eq "php mail(): To" "buyer@example.net" "$(msg $n field To)"
  expect_eq "php mail(): Cc" "Office <office@example.net>" "$(msg $n field Cc)"
  expect_eq "php mail(): Subject" "PHP mail() order" "$(msg $n field Subject)"
  expect_eq "php mail(): From" "Shop <shop@example.org>" "$(msg $n field From)"
  # mail() ends what it writes with one more line end after the message.
  printf 'Hello from PHP.\n.a line that starts with a dot\n.\n\nlast line\n\n' \
    > "$T/php.body"
  msg $n body > "$T/php.got"
  check "php mail(): body intact (dots, empty line)" \
    cmp -s "$T/php.body" "$T/php.got"
  expect_eq "php mail(): CRLF line ends only" ok "$(msg $n crlf)"
else
  skip php "php not found (Debian package php-cli)"
fi

# ---- 2. git send-email ------------------------------------------------------

# git_env: a private git in $T, whatever repository the environment names
# (make check may run from a git hook, which exports GIT_DIR and the like).
git_env () {
  unset $(git rev-parse --local-env-vars)
  export HOME="$T/home" GIT_CONFIG_NOSYSTEM=1
}

if command -v git >/dev/null 2>&1 &&
   [ -x "$(git --exec-path)/git-send-email" ]; then
  RAN=$((RAN + 1))
  repo="$T/repo"
  (
    git_env
    git init -q "$repo" && cd "$repo" &&
    git config user.name Dev && git config user.email dev@example.org &&
    printf 'first line\n.dot at the start\n\ttab\n' > notes.txt &&
    git add notes.txt &&
    printf '%s\n' 'notes: add the first notes' '' \
      'A commit message whose lines test the transport:' \
      '.a line that starts with a dot' '.' '..' \
      'From the start of a line, as mbox would quote it' > "$T/commit.msg" &&
    git commit -q --cleanup=verbatim -F "$T/commit.msg" &&
    git format-patch -q -1 -o "$T/patches"
  ) >"$T/git.out" 2>&1
  patch=$(ls "$T"/patches/*.patch 2>/dev/null | head -n 1)
  check "git: one patch made" test -n "$patch"
  if [ -n "$patch" ]; then
    n=$(count_mail mx)
    (
      git_env
      cd "$repo" &&
      timeout $TO git send-email --smtp-server="$SENDMAIL" \
        --to=maint@example.org --cc=list@example.net --confirm=never \
        --no-chain-reply-to --suppress-cc=all \
        --from="Dev <dev@example.org>" "$patch" </dev/null
    ) >>"$T/git.out" 2>&1
    expect_eq "git send-email: exit 0" 0 $?
    check "git send-email: one message arrived" arrived "$n"
    n=$((n + 1))
    # send-email runs "sendmail -i RCPT..." without -f by default.
    expect_eq "git send-email: envelope" \
      "$LOGIN@example.test list@example.net maint@example.org" \
      "$(msg $n envelope)"
    expect_eq "git send-email: From" "Dev <dev@example.org>" \
      "$(msg $n field From)"
    expect_eq "git send-email: To" "maint@example.org" "$(msg $n field To)"
    expect_eq "git send-email: Cc" "list@example.net" "$(msg $n field Cc)"
    expect_eq "git send-email: Subject" \
      "[PATCH] notes: add the first notes" "$(msg $n field Subject)"
    sed '1,/^$/d' "$patch" > "$T/patch.body"
    msg $n body > "$T/patch.got"
    check "git send-email: the patch body arrived byte for byte" \
      cmp -s "$T/patch.body" "$T/patch.got"
    expect_eq "git send-email: CRLF line ends only" ok "$(msg $n crlf)"

    # --envelope-sender=auto: "sendmail -f dev@example.org -i RCPT...".
    n=$(count_mail mx)
    (
      git_env
      cd "$repo" &&
      timeout $TO git send-email --smtp-server="$SENDMAIL" \
        --envelope-sender=auto --to=maint@example.org --confirm=never \
        --suppress-cc=all --from="Dev <dev@example.org>" "$patch" </dev/null
    ) >>"$T/git.out" 2>&1
    expect_eq "git send-email --envelope-sender=auto: exit 0" 0 $?
    check "git send-email --envelope-sender=auto: one message arrived" \
      arrived "$n"
    n=$((n + 1))
    expect_eq "git send-email --envelope-sender=auto: envelope" \
      "dev@example.org maint@example.org" "$(msg $n envelope)"
  fi
else
  skip git "git send-email not found (Debian packages git, git-email)"
fi

# ---- 3. mutt in batch mode -----------------------------------------------

MUTT=
for m in mutt neomutt; do
  if command -v $m >/dev/null 2>&1; then MUTT=$m; break; fi
done
if [ -n "$MUTT" ]; then
  RAN=$((RAN + 1))
  mkdir -p "$T/mutt"
  cat > "$T/muttrc" <<EOF
set sendmail="$SENDMAIL -oem -oi"
set from="Me <me@example.org>"
set use_from=yes
set hostname="example.org"
set folder="$T/mutt"
set spoolfile="$T/mutt/inbox"
set record=""
set copy=no
set send_charset="us-ascii:utf-8"
EOF
  printf 'Hello from %s.\n.a dot line\n.\n\nBye.\n' "$MUTT" > "$T/mutt.body"
  n=$(count_mail mx)
  ( export HOME="$T/home" MAIL="$T/mutt/inbox"
    timeout $TO $MUTT -n -F "$T/muttrc" -s "mutt batch test" \
      -c cc@example.net -b bcc@example.net -- rcpt@example.org \
      < "$T/mutt.body" ) >"$T/mutt.out" 2>&1
  expect_eq "$MUTT: exit 0" 0 $?
  check "$MUTT: one message arrived" arrived "$n"
  n=$((n + 1))
  # mutt runs "sendmail -oem -oi -- RCPT..." with To, Cc and Bcc.
  expect_eq "$MUTT: envelope" \
    "$LOGIN@example.test bcc@example.net cc@example.net rcpt@example.org" \
    "$(msg $n envelope)"
  expect_eq "$MUTT: From" "Me <me@example.org>" "$(msg $n field From)"
  expect_eq "$MUTT: To" "rcpt@example.org" "$(msg $n field To)"
  expect_eq "$MUTT: Cc" "cc@example.net" "$(msg $n field Cc)"
  expect_eq "$MUTT: Subject" "mutt batch test" "$(msg $n field Subject)"
  expect_eq "$MUTT: no Bcc field in the data" "" "$(msg $n field Bcc)"
  check "$MUTT: one Message-ID" \
    test "$(msg $n field Message-ID | wc -l)" -eq 1
  check "$MUTT: one Date" test "$(msg $n field Date | wc -l)" -eq 1
  msg $n body > "$T/mutt.got"
  check "$MUTT: body intact" cmp -s "$T/mutt.body" "$T/mutt.got"
  expect_eq "$MUTT: CRLF line ends only" ok "$(msg $n crlf)"

  # With use_envelope_from, mutt adds "-f me@example.org".
  echo 'set use_envelope_from=yes' >> "$T/muttrc"
  n=$(count_mail mx)
  ( export HOME="$T/home" MAIL="$T/mutt/inbox"
    timeout $TO $MUTT -n -F "$T/muttrc" -s "envelope from" -- \
      rcpt@example.org < "$T/mutt.body" ) >>"$T/mutt.out" 2>&1
  expect_eq "$MUTT use_envelope_from: exit 0" 0 $?
  check "$MUTT use_envelope_from: one message arrived" arrived "$n"
  n=$((n + 1))
  expect_eq "$MUTT use_envelope_from: envelope" \
    "me@example.org rcpt@example.org" "$(msg $n envelope)"
else
  skip mutt "neither mutt nor neomutt found (Debian package mutt)"
fi

# ---- 4. cron ----------------------------------------------------------------

# run_crontab FILE: runs every job line of FILE once, the way Debian's
# cron does: the command through "$SHELL -c" with the crontab's variables
# in its environment, and, if it wrote anything, the output mailed with
# "sendmail -FCronDaemon -i -B8BITMIME -oem $MAILTO" under cron's header
# (Debian's cron passes MAILTO as one argument, commas and all).
run_crontab () {
  crontab_env=
  job=0
  while IFS= read -r line; do
    case $line in
      ''|'#'*) continue ;;
      [A-Za-z_]*=*) crontab_env="$crontab_env
$line"; continue ;;
    esac
    job=$((job + 1))
    # minute hour day month weekday command
    cmd=$(printf '%s\n' "$line" | sed 's/^[^ ]* [^ ]* [^ ]* [^ ]* [^ ]* //')
    (
      SHELL=/bin/sh HOME="$T/home" LOGNAME=$LOGIN
      MAILTO=$LOGIN
      eval "$(printf '%s\n' "$crontab_env" | sed -n \
        "s/^\([A-Za-z_][A-Za-z_0-9]*\)=\(.*\)$/\1='\2'; export \1/p")"
      export SHELL HOME LOGNAME MAILTO
      cd "$HOME" && timeout $TO "$SHELL" -c "$cmd" > "$T/cron.$job.out" 2>&1
      [ -s "$T/cron.$job.out" ] || exit 0
      [ -n "$MAILTO" ] || exit 0
      {
        printf 'From: root (Cron Daemon)\n'
        printf 'To: %s\n' "$MAILTO"
        printf 'Subject: Cron <%s@%s> %s\n' "$LOGNAME" \
          "$(hostname | sed 's/\..*//')" "$cmd"
        printf 'MIME-Version: 1.0\n'
        printf 'Content-Type: text/plain; charset=UTF-8\n'
        printf 'Content-Transfer-Encoding: 8bit\n'
        for v in SHELL HOME PATH LOGNAME MAILTO; do
          eval "printf 'X-Cron-Env: <%s=%s>\n' $v \"\${$v:-}\""
        done
        printf '\n'
        cat "$T/cron.$job.out"
      } | timeout $TO "$SENDMAIL" -FCronDaemon -i -B8BITMIME -oem "$MAILTO"
    )
  done < "$1"
}

if command -v run-parts >/dev/null 2>&1; then
  RAN=$((RAN + 1))
  mkdir -p "$T/cron.daily"
  cat > "$T/cron.daily/50-backup" <<'EOF'
#!/bin/sh
echo "Sicherung fertig: 3 Dateien, Größe 12 MB – ok"
echo "."
echo ".hidden"
EOF
  printf '#!/bin/sh\nexit 0\n' > "$T/cron.daily/10-quiet"
  chmod 755 "$T/cron.daily/50-backup" "$T/cron.daily/10-quiet"
  printf 'not run: its name has a dot\n' > "$T/cron.daily/skip.me"
  chmod 755 "$T/cron.daily/skip.me"

  # MAILTO=root: a bare local name, mapped by the aliases file.
  n=$(count_mail mx)
  cat > "$T/crontab" <<EOF
# m h dom mon dow command
MAILTO=root
25 6 * * * run-parts --report $T/cron.daily
EOF
  run_crontab "$T/crontab" 2>"$T/cron.err"
  expect_eq "cron MAILTO=root: sendmail exit 0" 0 $?
  check "cron MAILTO=root: one message arrived" arrived "$n"
  n=$((n + 1))
  expect_eq "cron MAILTO=root: envelope, root mapped by the aliases" \
    "$LOGIN@example.test admin@example.org" "$(msg $n envelope)"
  check "cron MAILTO=root: MAIL with BODY=8BITMIME" \
    sh -c "echo ' $(msg $n options) ' | grep -q ' BODY=8BITMIME '"
  expect_eq "cron MAILTO=root: Subject" \
    "Cron <$LOGIN@$(hostname | sed 's/\..*//')> run-parts --report $T/cron.daily" \
    "$(msg $n field Subject)"
  check "cron MAILTO=root: one From, cron's" \
    test "$(msg $n field From | grep -c 'Cron Daemon')" -eq 1 \
    -a "$(msg $n field From | wc -l)" -eq 1
  expect_eq "cron MAILTO=root: cron's bare From: root given the domain" \
    "root@example.test (Cron Daemon)" "$(msg $n field From)"
  expect_eq "cron MAILTO=root: its To: root too (the header is not aliased)" \
    "root@example.test" "$(msg $n field To)"
  expect_eq "cron MAILTO=root: the X-Cron-Env fields kept" 5 \
    "$(msg $n field X-Cron-Env | wc -l)"
  printf '%s:\nSicherung fertig: 3 Dateien, Größe 12 MB – ok\n.\n.hidden\n' \
    "$T/cron.daily/50-backup" > "$T/cron.want"
  msg $n body > "$T/cron.got"
  check "cron MAILTO=root: run-parts output intact, 8-bit and dots" \
    cmp -s "$T/cron.want" "$T/cron.got"
  expect_eq "cron MAILTO=root: CRLF line ends only" ok "$(msg $n crlf)"

  # MAILTO=ops: a bare name the aliases do not know gets the domain.
  # MAILTO=root,ops@example.net: two recipients in one argument.
  n=$(count_mail mx)
  cat > "$T/crontab" <<EOF
MAILTO=ops
0 * * * * echo "hourly from \$LOGNAME"
MAILTO=root,ops@example.net
0 0 * * * echo nightly; true
EOF
  run_crontab "$T/crontab" 2>>"$T/cron.err"
  expect_eq "cron: both jobs mailed" $((n + 2)) "$(count_mail mx)"
  expect_eq "cron MAILTO=ops: qualified with the configured domain" \
    "$LOGIN@example.test ops@example.test" "$(msg $((n + 1)) envelope)"
  expect_eq "cron MAILTO=ops: the job's output" "hourly from $LOGIN" \
    "$(msg $((n + 1)) body)"
  expect_eq "cron MAILTO=root,ops@example.net: both recipients" \
    "$LOGIN@example.test admin@example.org ops@example.net" \
    "$(msg $((n + 2)) envelope)"
  expect_eq "cron: nothing on stderr" "" "$(cat "$T/cron.err")"
else
  skip cron "run-parts not found (Debian package debianutils)"
fi

# ---- 5. a Symfony-like -bs client ----------------------------------------

if [ -x "$PY" ]; then
  RAN=$((RAN + 1))
  BS="$top_srcdir/tests/bs-client.py"
  printf '%s\n' 'From: Shop <shop@example.org>' 'To: buyer@example.net' \
    'Cc: office@example.net' 'Subject: Order 42' \
    'Message-ID: <order42@example.org>' 'MIME-Version: 1.0' \
    'Content-Type: text/plain; charset=utf-8' \
    'Content-Transfer-Encoding: 8bit' '' 'Thanks for your order.' \
    '.a line that starts with a dot' '.' '..' '' 'Grüße, the shop' \
    > "$T/bs1.eml"
  sed 's/Order 42/Order 43/; s/order42/order43/' "$T/bs1.eml" > "$T/bs2.eml"
  sed '1,/^$/d' "$T/bs1.eml" > "$T/bs.want"

  # EHLO, one message to two recipients.
  n=$(count_mail mx)
  timeout $TO "$PY" "$BS" --transcript "$T/bs.transcript" \
    --from shop@example.org --to buyer@example.net --to office@example.net \
    --message "$T/bs1.eml" -- "$SENDMAIL" -bs 2>"$T/bs.err"
  expect_eq "-bs client (EHLO): every reply as expected" 0 $?
  [ -s "$T/bs.err" ] && cat "$T/bs.err"
  check "-bs client (EHLO): one message arrived" arrived "$n"
  n=$((n + 1))
  expect_eq "-bs client (EHLO): envelope" \
    "shop@example.org buyer@example.net office@example.net" \
    "$(msg $n envelope)"
  msg $n body > "$T/bs.got"
  check "-bs client (EHLO): dot-unstuffed body, 8-bit intact" \
    cmp -s "$T/bs.want" "$T/bs.got"
  expect_eq "-bs client (EHLO): Subject" "Order 42" "$(msg $n field Subject)"
  expect_eq "-bs client (EHLO): CRLF line ends only" ok "$(msg $n crlf)"

  # HELO, as Symfony's SendmailTransport sends, and two messages in one
  # session, as a long-running worker sends them.
  n=$(count_mail mx)
  timeout $TO "$PY" "$BS" --helo --transcript "$T/bs.transcript" \
    --from shop@example.org --to buyer@example.net --to office@example.net \
    --message "$T/bs1.eml" --message "$T/bs2.eml" -- "$SENDMAIL" -bs \
    2>"$T/bs.err"
  expect_eq "-bs client (HELO, 2 messages): every reply as expected" 0 $?
  [ -s "$T/bs.err" ] && cat "$T/bs.err"
  expect_eq "-bs client (HELO, 2 messages): two messages arrived" \
    $((n + 2)) "$(count_mail mx)"
  expect_eq "-bs client (HELO): first message" "Order 42" \
    "$(msg $((n + 1)) field Subject)"
  expect_eq "-bs client (HELO): second message" "Order 43" \
    "$(msg $((n + 2)) field Subject)"
  expect_eq "-bs client (HELO): second envelope" \
    "shop@example.org buyer@example.net office@example.net" \
    "$(msg $((n + 2)) envelope)"
  msg $((n + 2)) body > "$T/bs.got"
  check "-bs client (HELO): second body dot-unstuffed" \
    cmp -s "$T/bs.want" "$T/bs.got"

  # In the default delivery mode (background) the client must get every
  # reply and then the end of sendmail's output at once, even when the
  # relay is slow: a queue runner left holding the pipe would keep a
  # framework that reads to the end waiting for the whole delivery.
  start_server slow --greeting-delay 4
  write_config "delivery_mode = background" -- slow
  start=$(date +%s)
  timeout $TO "$PY" "$BS" --transcript "$T/bs.transcript" \
    --from shop@example.org --to buyer@example.net \
    --message "$T/bs1.eml" -- "$SENDMAIL" -bs 2>"$T/bs.err"
  expect_eq "-bs client, background mode: every reply as expected" 0 $?
  [ -s "$T/bs.err" ] && cat "$T/bs.err"
  took=$(($(date +%s) - start))
  check "-bs client, background mode: done before the slow relay ($took s)" \
    test "$took" -lt 3
  i=0
  while [ "$(count_mail slow)" -eq 0 ] && [ $i -lt 150 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  expect_eq "-bs client, background mode: delivered by the queue runner" \
    1 "$(count_mail slow)"
  write_config -- mx
else
  skip -bs "$PY not found"
fi

# ---------------------------------------------------------------------------

if [ "$RAN" -eq 0 ]; then
  echo "SKIP: none of the callers (php, git send-email, mutt, run-parts, $PY) is installed"
  exit 77
fi
i=0
while [ "$(queued)" -ne 0 ] && [ $i -lt 100 ]; do
  sleep 0.1
  i=$((i + 1))
done
expect_eq "nothing left in the queue" 0 "$(queued)"
check "no rampmail process is left" wait_runner 5
finish
