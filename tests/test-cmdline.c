/* Unit tests of the sendmail command line (src/cmdline.c). */
#include "config.h"

#include <string.h>

#include "cmdline.h"
#include "errors.h"

/* Parses "sendmail ARGS..." (or argv0 ARGS...). */
static gboolean
parse_as (const char *argv0, const char *const *args, RmOptions *opts,
          GError **error)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();

  memset (opts, 0, sizeof *opts);
  g_ptr_array_add (argv, (gpointer) argv0);
  for (gsize i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (gpointer) args[i]);
  g_ptr_array_add (argv, NULL);
  return rm_cmdline_parse ((int) argv->len - 1, (char **) argv->pdata, opts,
                           error);
}

#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define NO_ARGS ((const char *const[]){ NULL })

static void
parse_ok (const char *const *args, RmOptions *opts)
{
  g_autoptr (GError) error = NULL;

  if (!parse_as ("sendmail", args, opts, &error))
    g_error ("unexpected parse error: %s", error->message);
}

/* Checks that args fail with RM_ERROR_USAGE and a message holding want. */
static void
parse_fails (const char *const *args, const char *want)
{
  g_autoptr (GError) error = NULL;
  RmOptions opts;

  g_assert_false (parse_as ("sendmail", args, &opts, &error));
  g_assert_error (error, RM_ERROR, RM_ERROR_USAGE);
  if (strstr (error->message, want) == NULL)
    g_error ("message \"%s\" lacks \"%s\"", error->message, want);
  /* A failed parse leaves nothing to free. */
  g_assert_null (opts.recipients);
  g_assert_null (opts.sender);
}

static void
assert_recipients (const RmOptions *opts, const char *const *want)
{
  gsize n = g_strv_length ((char **) want);

  g_assert_cmpuint (opts->recipients->len, ==, n);
  for (gsize i = 0; i < n; i++)
    g_assert_cmpstr (g_ptr_array_index (opts->recipients, i), ==, want[i]);
}

static void
assert_ignored (const RmOptions *opts, const char *const *want)
{
  gsize n = g_strv_length ((char **) want);

  g_assert_cmpuint (opts->ignored->len, ==, n);
  for (gsize i = 0; i < n; i++)
    g_assert_cmpstr (g_ptr_array_index (opts->ignored, i), ==, want[i]);
}

/* ---- the command lines of ../shared/cases ------------------------------ */

static const struct {
  const char *name;
  const char *const *args;
  gboolean ok;
} case_lines[] = {
  { "001", ARGS ("-t", "-i"), TRUE },
  { "002", ARGS ("-t", "-i", "-fbounces@example.com"), TRUE },
  { "004",
    ARGS ("-f", "dev@example.com", "-i", "maintainer@example.org",
          "patches@lists.example.net", "reviewer@example.com"),
    TRUE },
  { "005",
    ARGS ("-i", "-f", "dev@example.com", "--", "maintainer@example.org"),
    TRUE },
  { "006",
    ARGS ("-oem", "-oi", "--", "friend@example.net",
          "secret-archive@example.org"),
    TRUE },
  { "007",
    ARGS ("-FCronDaemon", "-i", "-B8BITMIME", "-oem", "ops@example.com"),
    TRUE },
  { "008",
    ARGS ("-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "<>"),
    TRUE },
  { "009", ARGS ("storage-admin@example.com"), TRUE },
  { "010", ARGS ("-t"), TRUE },
  { "012", ARGS ("-i", "-t"), TRUE },
  { "013", ARGS ("-bs"), TRUE },
  { "014", ARGS ("-f", "billing@example.com", "client@example.org"), TRUE },
  { "015", ARGS ("-r", "alerts@example.net", "-i", "oncall@example.com"),
    TRUE },
  { "016",
    ARGS ("-F", "Backup Robot", "-f", "backup@example.com",
          "admin@example.org"),
    TRUE },
  { "018", ARGS ("-t", "-i", "archive@example.com"), TRUE },
  { "022", ARGS ("-t", "-i", "ops@example.com", "ops@example.com"), TRUE },
  { "023", ARGS ("-i", "Jane.Doe@example.com", "OPS-Team@example.org"),
    TRUE },
  { "024", ARGS ("-i", "-f", "helpdesk@example.com", "customer@example.net"),
    TRUE },
  { "027", ARGS ("reader@example.org"), TRUE },
  { "028", ARGS ("-oi", "-t"), TRUE },
  { "033",
    ARGS ("-i", "j\xc3\xbcrgen@example.net",
          "\xe7\x94\xa8\xe6\x88\xb7@example.org"),
    TRUE },
  { "041", NO_ARGS, TRUE },
  { "043", ARGS ("-i", "bob@example.org", "<alice@example.com"), TRUE },
  { "044", ARGS ("-Y", "-i", "admin@example.org"), FALSE },
  { "045",
    ARGS ("-i", "good@example.com>\r\nRCPT TO:<evil@example.net>"
                "\r\nX-INJECTED"),
    TRUE },
  { "048",
    ARGS ("-FCronDaemon", "-i", "-B8BITMIME", "-oem", "ops@example.com"),
    TRUE },
};

static void
test_cases_all_parse (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (case_lines); i++)
    {
      g_autoptr (GError) error = NULL;
      RmOptions opts;
      gboolean ok = parse_as ("sendmail", case_lines[i].args, &opts, &error);

      g_test_message ("case %s", case_lines[i].name);
      g_assert_cmpint (ok, ==, case_lines[i].ok);
      if (ok)
        {
          g_assert_no_error (error);
          rm_options_clear (&opts);
        }
      else
        g_assert_error (error, RM_ERROR, RM_ERROR_USAGE);
    }
}

static void
test_case_php (void)
{
  RmOptions opts;

  parse_ok (ARGS ("-t", "-i"), &opts);
  g_assert_cmpint (opts.mode, ==, RM_MODE_SEND);
  g_assert_true (opts.read_recipients);
  g_assert_true (opts.ignore_dots);
  g_assert_null (opts.sender);
  g_assert_cmpuint (opts.recipients->len, ==, 0);
  g_assert_cmpuint (opts.ignored->len, ==, 0);
  rm_options_clear (&opts);

  parse_ok (ARGS ("-t", "-i", "-fbounces@example.com"), &opts);
  g_assert_cmpstr (opts.sender, ==, "bounces@example.com");
  rm_options_clear (&opts);
}

static void
test_case_git (void)
{
  RmOptions opts;

  parse_ok (ARGS ("-f", "dev@example.com", "-i", "maintainer@example.org",
                  "patches@lists.example.net", "reviewer@example.com"),
            &opts);
  g_assert_cmpstr (opts.sender, ==, "dev@example.com");
  g_assert_true (opts.ignore_dots);
  g_assert_false (opts.read_recipients);
  assert_recipients (&opts, ARGS ("maintainer@example.org",
                                  "patches@lists.example.net",
                                  "reviewer@example.com"));
  rm_options_clear (&opts);

  parse_ok (
      ARGS ("-i", "-f", "dev@example.com", "--", "maintainer@example.org"),
      &opts);
  assert_recipients (&opts, ARGS ("maintainer@example.org"));
  rm_options_clear (&opts);
}

static void
test_case_mutt (void)
{
  RmOptions opts;

  parse_ok (ARGS ("-oem", "-oi", "--", "friend@example.net",
                  "secret-archive@example.org"),
            &opts);
  g_assert_true (opts.ignore_dots);
  assert_recipients (
      &opts, ARGS ("friend@example.net", "secret-archive@example.org"));
  assert_ignored (&opts, ARGS ("-oem"));
  rm_options_clear (&opts);
}

static void
test_case_cron (void)
{
  RmOptions opts;

  parse_ok (
      ARGS ("-FCronDaemon", "-i", "-B8BITMIME", "-oem", "ops@example.com"),
      &opts);
  g_assert_cmpstr (opts.full_name, ==, "CronDaemon");
  g_assert_true (opts.ignore_dots);
  g_assert_cmpint (opts.body, ==, RM_BODY_8BITMIME_ARG);
  assert_ignored (&opts, ARGS ("-oem"));
  assert_recipients (&opts, ARGS ("ops@example.com"));
  rm_options_clear (&opts);

  /* cronie: "-f" and "<>" as two arguments. */
  parse_ok (
      ARGS ("-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "<>"),
      &opts);
  g_assert_cmpstr (opts.sender, ==, "<>");
  g_assert_cmpint (opts.delivery, ==, RM_DELIVERY_INTERACTIVE);
  g_assert_true (opts.read_recipients);
  g_assert_cmpuint (opts.recipients->len, ==, 0);
  rm_options_clear (&opts);
}

static void
test_case_misc (void)
{
  RmOptions opts;

  parse_ok (ARGS ("storage-admin@example.com"), &opts);
  assert_recipients (&opts, ARGS ("storage-admin@example.com"));
  g_assert_false (opts.ignore_dots);
  rm_options_clear (&opts);

  parse_ok (ARGS ("-bs"), &opts);
  g_assert_cmpint (opts.mode, ==, RM_MODE_SMTP_STDIO);
  rm_options_clear (&opts);

  parse_ok (ARGS ("-r", "alerts@example.net", "-i", "oncall@example.com"),
            &opts);
  g_assert_cmpstr (opts.sender, ==, "alerts@example.net");
  rm_options_clear (&opts);

  parse_ok (ARGS ("-F", "Backup Robot", "-f", "backup@example.com",
                  "admin@example.org"),
            &opts);
  g_assert_cmpstr (opts.full_name, ==, "Backup Robot");
  g_assert_cmpstr (opts.sender, ==, "backup@example.com");
  assert_recipients (&opts, ARGS ("admin@example.org"));
  rm_options_clear (&opts);

  /* Duplicates and syntax are left to later stages. */
  parse_ok (ARGS ("-t", "-i", "ops@example.com", "ops@example.com"), &opts);
  assert_recipients (&opts, ARGS ("ops@example.com", "ops@example.com"));
  rm_options_clear (&opts);

  parse_ok (ARGS ("-i", "bob@example.org", "<alice@example.com"), &opts);
  assert_recipients (&opts, ARGS ("bob@example.org", "<alice@example.com"));
  rm_options_clear (&opts);

  parse_ok (NO_ARGS, &opts);
  g_assert_cmpint (opts.mode, ==, RM_MODE_SEND);
  g_assert_cmpuint (opts.recipients->len, ==, 0);
  rm_options_clear (&opts);
}

static void
test_case_unknown_y (void)
{
  parse_fails (ARGS ("-Y", "-i", "admin@example.org"), "unknown option -Y");
}

/* ---- glued and separate values ------------------------------------------ */

static void
test_glued_and_separate (void)
{
  const char *const *const pairs[][2] = {
    { ARGS ("-fa@example.com"), ARGS ("-f", "a@example.com") },
    { ARGS ("-ra@example.com"), ARGS ("-r", "a@example.com") },
    { ARGS ("-FCron Daemon"), ARGS ("-F", "Cron Daemon") },
    { ARGS ("-B7BIT"), ARGS ("-B", "7BIT") },
    { ARGS ("-Nnever"), ARGS ("-N", "never") },
    { ARGS ("-Rhdrs"), ARGS ("-R", "hdrs") },
    { ARGS ("-Vid-42"), ARGS ("-V", "id-42") },
    { ARGS ("-C/tmp/x.conf"), ARGS ("-C", "/tmp/x.conf") },
    { ARGS ("-bm"), ARGS ("-b", "m") },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (pairs); i++)
    {
      RmOptions a, b;

      parse_ok (pairs[i][0], &a);
      parse_ok (pairs[i][1], &b);
      g_assert_cmpstr (a.sender, ==, b.sender);
      g_assert_cmpstr (a.full_name, ==, b.full_name);
      g_assert_cmpint (a.body, ==, b.body);
      g_assert_cmpstr (a.notify, ==, b.notify);
      g_assert_cmpstr (a.dsn_ret, ==, b.dsn_ret);
      g_assert_cmpstr (a.envid, ==, b.envid);
      g_assert_cmpstr (a.config_file, ==, b.config_file);
      g_assert_cmpint (a.mode, ==, b.mode);
      g_assert_cmpuint (a.recipients->len, ==, 0);
      g_assert_cmpuint (b.recipients->len, ==, 0);
      rm_options_clear (&a);
      rm_options_clear (&b);
    }
}

static void
test_values (void)
{
  RmOptions opts;

  parse_ok (ARGS ("-F", "Cron Daemon", "-B", "7bit", "-N", "delay, Failure",
                  "-R", "FULL", "-V", "x1", "-C", "rel.conf", "-v", "a@b"),
            &opts);
  g_assert_cmpstr (opts.full_name, ==, "Cron Daemon");
  g_assert_cmpint (opts.body, ==, RM_BODY_7BIT_ARG);
  g_assert_cmpstr (opts.notify, ==, "delay,failure");
  g_assert_cmpstr (opts.dsn_ret, ==, "full");
  g_assert_cmpstr (opts.envid, ==, "x1");
  g_assert_cmpstr (opts.config_file, ==, "rel.conf");
  g_assert_true (opts.verbose);
  rm_options_clear (&opts);

  parse_ok (ARGS ("-B8bitmime", "-Nsuccess,failure,delay"), &opts);
  g_assert_cmpint (opts.body, ==, RM_BODY_8BITMIME_ARG);
  g_assert_cmpstr (opts.notify, ==, "success,failure,delay");
  rm_options_clear (&opts);

  /* The sender value is taken whatever it looks like, as getopt does. */
  parse_ok (ARGS ("-f", "-i", "x@y"), &opts);
  g_assert_cmpstr (opts.sender, ==, "-i");
  g_assert_false (opts.ignore_dots);
  rm_options_clear (&opts);

  parse_ok (ARGS ("-f", "", "x@y"), &opts);
  g_assert_cmpstr (opts.sender, ==, "");
  rm_options_clear (&opts);

  /* The last one wins. */
  parse_ok (ARGS ("-f", "a@x", "-r", "b@x", "-F", "A", "-FB"), &opts);
  g_assert_cmpstr (opts.sender, ==, "b@x");
  g_assert_cmpstr (opts.full_name, ==, "B");
  rm_options_clear (&opts);
}

static void
test_bad_values (void)
{
  parse_fails (ARGS ("-B", "9BIT"), "-B");
  parse_fails (ARGS ("-B8BIT"), "-B");
  parse_fails (ARGS ("-N", "sometimes"), "-N");
  parse_fails (ARGS ("-N", "never,success"), "-N");
  parse_fails (ARGS ("-N", ","), "-N");
  parse_fails (ARGS ("-R", "body"), "-R");
  parse_fails (ARGS ("-V", "has space"), "-V");
  parse_fails (ARGS ("-V", ""), "-V");
  parse_fails (ARGS ("-Vx\r\nRCPT"), "-V");
  {
    g_autofree char *envid = g_strnfill (101, 'e');
    parse_fails (ARGS ("-V", envid), "-V");
  }
  parse_fails (ARGS ("-F", "Evil\r\nBcc: x@example.com"), "-F");
  parse_fails (ARGS ("-bd"), "-bd");
  parse_fails (ARGS ("-bt"), "-bt");
  parse_fails (ARGS ("-bv"), "-bv");
  parse_fails (ARGS ("-bmx"), "-bmx");
  parse_fails (ARGS ("-b", ""), "-b");
}

/* ---- -o, -od, -q ---------------------------------------------------------- */

static void
test_o_options (void)
{
  static const struct {
    const char *arg;
    RmDelivery delivery;
  } od[] = {
    { "-odb", RM_DELIVERY_BACKGROUND },
    { "-odbackground", RM_DELIVERY_BACKGROUND },
    { "-odi", RM_DELIVERY_INTERACTIVE },
    { "-odinteractive", RM_DELIVERY_INTERACTIVE },
    { "-odq", RM_DELIVERY_QUEUE },
    { "-odqueue", RM_DELIVERY_QUEUE },
    { "-odd", RM_DELIVERY_QUEUE },
  };
  RmOptions opts;

  for (gsize i = 0; i < G_N_ELEMENTS (od); i++)
    {
      parse_ok (ARGS (od[i].arg), &opts);
      g_assert_cmpint (opts.delivery, ==, od[i].delivery);
      g_assert_cmpuint (opts.ignored->len, ==, 0);
      rm_options_clear (&opts);
    }
  parse_ok (NO_ARGS, &opts);
  g_assert_cmpint (opts.delivery, ==, RM_DELIVERY_DEFAULT);
  rm_options_clear (&opts);

  parse_fails (ARGS ("-odx"), "-od");
  parse_fails (ARGS ("-od"), "-od");
  parse_fails (ARGS ("-o"), "option -o needs an argument");
  parse_fails (ARGS ("-o", ""), "-o");

  parse_ok (ARGS ("-oi"), &opts);
  g_assert_true (opts.ignore_dots);
  rm_options_clear (&opts);
  parse_ok (ARGS ("-i", "-oiFalse"), &opts);
  g_assert_false (opts.ignore_dots);
  rm_options_clear (&opts);
  parse_ok (ARGS ("-oiTrue"), &opts);
  g_assert_true (opts.ignore_dots);
  rm_options_clear (&opts);

  /* "-o" then its value as the next argument, as with getopt. */
  parse_ok (ARGS ("-o", "em", "-o", "di", "a@b"), &opts);
  assert_ignored (&opts, ARGS ("-o em"));
  g_assert_cmpint (opts.delivery, ==, RM_DELIVERY_INTERACTIVE);
  assert_recipients (&opts, ARGS ("a@b"));
  rm_options_clear (&opts);
}

static void
test_queue_run (void)
{
  RmOptions opts;

  parse_ok (ARGS ("-q"), &opts);
  g_assert_cmpint (opts.mode, ==, RM_MODE_QUEUE_RUN);
  g_assert_null (opts.queue_interval);
  rm_options_clear (&opts);

  parse_ok (ARGS ("-q30m"), &opts);
  g_assert_cmpint (opts.mode, ==, RM_MODE_QUEUE_RUN);
  g_assert_cmpstr (opts.queue_interval, ==, "30m");
  rm_options_clear (&opts);

  parse_ok (ARGS ("-v", "-q1h30m"), &opts);
  g_assert_cmpstr (opts.queue_interval, ==, "1h30m");
  g_assert_true (opts.verbose);
  rm_options_clear (&opts);

  parse_ok (ARGS ("-qRexample.com"), &opts);
  g_assert_cmpint (opts.mode, ==, RM_MODE_QUEUE_RUN);
  assert_ignored (&opts, ARGS ("-qRexample.com"));
  rm_options_clear (&opts);

  parse_ok (ARGS ("-qIABC123", "-qSexample.org"), &opts);
  assert_ignored (&opts, ARGS ("-qSexample.org"));
  g_assert_cmpstr (opts.queue_id, ==, "ABC123");
  rm_options_clear (&opts);

  parse_ok (ARGS ("--delete", "ABC", "DEF"), &opts);
  g_assert_cmpint (opts.mode, ==, RM_MODE_DELETE);
  g_assert_cmpuint (opts.recipients->len, ==, 2);
  rm_options_clear (&opts);
  parse_fails (ARGS ("--delete"), "--delete needs");

  parse_fails (ARGS ("-q0m"), "-q");
  parse_fails (ARGS ("-q30x"), "-q");
  parse_fails (ARGS ("-qf"), "-qf");
  parse_fails (ARGS ("-qR"), "-qR");
  parse_fails (ARGS ("-qI"), "-qI");
  /* "-q 30m": the interval must be glued; "30m" is then a recipient. */
  parse_fails (ARGS ("-q", "30m"), "-q takes no recipient");
}

static void
test_interval (void)
{
  static const struct {
    const char *text;
    guint seconds;
  } good[] = {
    { "30m", 1800 },   { "90s", 90 },      { "1h", 3600 },
    { "2h30m", 9000 }, { "15", 900 },      { "1d", 86400 },
    { "1w", 604800 },  { "1H1M1S", 3661 }, { "1h30", 5400 },
  };
  static const char *const bad[] = {
    "",   "m",    "5x",  "h1",           "0",
    "0m", "30m ", "-5m", "99999999999s", "4294967295m",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (good); i++)
    {
      g_autoptr (GError) error = NULL;

      g_assert_cmpuint (rm_cmdline_interval_seconds (good[i].text, &error),
                        ==, good[i].seconds);
      g_assert_no_error (error);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;

      g_assert_cmpuint (rm_cmdline_interval_seconds (bad[i], &error), ==, 0);
      g_assert_error (error, RM_ERROR, RM_ERROR_USAGE);
    }
  g_assert_cmpuint (rm_cmdline_interval_seconds (NULL, NULL), ==, 0);
}

/* ---- grouping, end of options, modes ------------------------------------ */

static void
test_grouped (void)
{
  RmOptions opts;

  parse_ok (ARGS ("-ti"), &opts);
  g_assert_true (opts.read_recipients);
  g_assert_true (opts.ignore_dots);
  rm_options_clear (&opts);

  parse_ok (ARGS ("-tifa@example.com", "b@example.com"), &opts);
  g_assert_cmpstr (opts.sender, ==, "a@example.com");
  assert_recipients (&opts, ARGS ("b@example.com"));
  rm_options_clear (&opts);

  parse_ok (ARGS ("-itf", "a@example.com"), &opts);
  g_assert_cmpstr (opts.sender, ==, "a@example.com");
  g_assert_true (opts.read_recipients);
  g_assert_cmpuint (opts.recipients->len, ==, 0);
  rm_options_clear (&opts);

  parse_ok (ARGS ("-mUn", "-h5"), &opts);
  assert_ignored (&opts, ARGS ("-m", "-U", "-n", "-h5"));
  rm_options_clear (&opts);

  parse_fails (ARGS ("-tY"), "unknown option -Y (in -tY)");
}

static void
test_end_of_options (void)
{
  RmOptions opts;

  /* Everything after the first recipient is a recipient. */
  parse_ok (ARGS ("-i", "a@example.com", "-t", "-fx@y"), &opts);
  g_assert_false (opts.read_recipients);
  g_assert_null (opts.sender);
  assert_recipients (&opts, ARGS ("a@example.com", "-t", "-fx@y"));
  rm_options_clear (&opts);

  parse_ok (ARGS ("--", "-t", "--"), &opts);
  g_assert_false (opts.read_recipients);
  assert_recipients (&opts, ARGS ("-t", "--"));
  rm_options_clear (&opts);

  parse_ok (ARGS ("-", "a@b"), &opts);
  assert_recipients (&opts, ARGS ("-", "a@b"));
  rm_options_clear (&opts);

  parse_ok (ARGS ("-oem", "-oi", "--", "a@b", "c@d"), &opts);
  assert_recipients (&opts, ARGS ("a@b", "c@d"));
  rm_options_clear (&opts);
}

static void
test_unknown (void)
{
  parse_fails (ARGS ("-Y"), "unknown option -Y");
  parse_fails (ARGS ("-i", "-Z", "a@b"), "unknown option -Z");
  parse_fails (ARGS ("--frobnicate"), "unknown option --frobnicate");
  parse_fails (ARGS ("--help=yes"), "unknown option --help=yes");
  /* Messages stay one line of ASCII whatever the argument holds. */
  parse_fails (ARGS ("-\xc3\xa9"), "unknown option \"-\\303\\251\"");
  parse_fails (ARGS ("-t\n"), "unknown option \"-t\\n\"");
  parse_fails (ARGS ("-B", "x\ny"), "not \"x\\ny\"");
  parse_fails (ARGS ("-XV"), "-XV");
  parse_fails (ARGS ("-XVab"), "-XV");
  parse_fails (ARGS ("-O", "RequireTLS=yes"), "-O RequireTLS=yes");
}

static void
test_missing_argument (void)
{
  static const char *const flags[] = {
    "-f", "-r", "-F", "-B", "-N", "-R", "-V", "-C",  "-b",  "-o",
    "-h", "-L", "-X", "-A", "-O", "-p", "-e", "-tf", "-mh",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (flags); i++)
    {
      const char *flag = flags[i];
      g_autofree char *want = g_strdup_printf ("option -%c needs an argument",
                                               flag[strlen (flag) - 1]);

      parse_fails (ARGS (flag), want);
    }
}

static void
test_program_names (void)
{
  g_autoptr (GError) error = NULL;
  RmOptions opts;

  g_assert_true (parse_as ("/usr/bin/mailq", NO_ARGS, &opts, &error));
  g_assert_cmpint (opts.mode, ==, RM_MODE_LIST_QUEUE);
  rm_options_clear (&opts);

  g_assert_true (parse_as ("newaliases", NO_ARGS, &opts, &error));
  g_assert_cmpint (opts.mode, ==, RM_MODE_ALIASES);
  rm_options_clear (&opts);

  g_assert_true (parse_as ("/usr/sbin/sendmail", NO_ARGS, &opts, &error));
  g_assert_cmpint (opts.mode, ==, RM_MODE_SEND);
  rm_options_clear (&opts);

  g_assert_true (parse_as ("mailq", ARGS ("-v"), &opts, &error));
  g_assert_cmpint (opts.mode, ==, RM_MODE_LIST_QUEUE);
  g_assert_true (opts.verbose);
  rm_options_clear (&opts);

  g_assert_false (parse_as ("mailq", ARGS ("a@b"), &opts, &error));
  g_assert_error (error, RM_ERROR, RM_ERROR_USAGE);
  g_assert_nonnull (strstr (error->message, "mailq"));

  g_assert_true (rm_cmdline_parse (0, (char *[]){ NULL }, &opts, NULL));
  g_assert_cmpint (opts.mode, ==, RM_MODE_SEND);
  rm_options_clear (&opts);
}

static void
test_modes (void)
{
  static const struct {
    const char *arg;
    RmMode mode;
  } modes[] = {
    { "-bm", RM_MODE_SEND },
    { "-bp", RM_MODE_LIST_QUEUE },
    { "-bi", RM_MODE_ALIASES },
    { "-I", RM_MODE_ALIASES },
    { "-bs", RM_MODE_SMTP_STDIO },
    { "-bV", RM_MODE_VERSION },
    { "--version", RM_MODE_VERSION },
    { "--help", RM_MODE_HELP },
    { "--check-config", RM_MODE_CHECK_CONFIG },
    { "--test-servers", RM_MODE_TEST_SERVERS },
    { "-q", RM_MODE_QUEUE_RUN },
  };
  RmOptions opts;

  for (gsize i = 0; i < G_N_ELEMENTS (modes); i++)
    {
      parse_ok (ARGS (modes[i].arg), &opts);
      g_assert_cmpint (opts.mode, ==, modes[i].mode);
      rm_options_clear (&opts);
    }

  parse_ok (ARGS ("-C", "/x.conf", "--check-config"), &opts);
  g_assert_cmpint (opts.mode, ==, RM_MODE_CHECK_CONFIG);
  g_assert_cmpstr (opts.config_file, ==, "/x.conf");
  rm_options_clear (&opts);

  parse_fails (ARGS ("-bp", "a@b"), "-bp (mailq) takes no recipient");
  parse_fails (ARGS ("-bs", "a@b"), "-bs takes no recipient");
  parse_fails (ARGS ("--check-config", "a@b"), "--check-config");
  parse_fails (ARGS ("-t", "-bp"), "-t cannot be used with -bp");
}

/* ---- accepted and ignored ------------------------------------------------- */

static void
test_ignored_flags (void)
{
  const struct {
    const char *const *args;
    const char *const *ignored;
  } cases[] = {
    { ARGS ("-n"), ARGS ("-n") },
    { ARGS ("-U"), ARGS ("-U") },
    { ARGS ("-m"), ARGS ("-m") },
    { ARGS ("-s"), ARGS ("-s") },
    { ARGS ("-x"), ARGS ("-x") },
    { ARGS ("-c"), ARGS ("-c") },
    { ARGS ("-G"), ARGS ("-G") },
    { ARGS ("-h", "5"), ARGS ("-h 5") },
    { ARGS ("-h5"), ARGS ("-h5") },
    { ARGS ("-Am"), ARGS ("-Am") },
    { ARGS ("-A", "c"), ARGS ("-A c") },
    { ARGS ("-L", "cron"), ARGS ("-L cron") },
    { ARGS ("-X", "/tmp/traffic.log"), ARGS ("-X /tmp/traffic.log") },
    { ARGS ("-O", "smtputf8=yes"), ARGS ("-O smtputf8=yes") },
    { ARGS ("-O", "requiretls=no"), ARGS ("-O requiretls=no") },
    { ARGS ("-p", "smtp"), ARGS ("-p smtp") },
    { ARGS ("-eq"), ARGS ("-eq") },
    { ARGS ("-o7", "-o8"), ARGS ("-o7", "-o8") },
    { ARGS ("-oA/etc/aliases"), ARGS ("-oA/etc/aliases") },
    { ARGS ("-oem", "-oep", "-oeq", "-oew", "-oee"),
      ARGS ("-oem", "-oep", "-oeq", "-oew", "-oee") },
    { ARGS ("-oL9"), ARGS ("-oL9") },
    { ARGS ("-om"), ARGS ("-om") },
    { ARGS ("-oQ/var/spool/mqueue", "-oB."),
      ARGS ("-oQ/var/spool/mqueue", "-oB.") },
    { ARGS ("-qRexample.com"), ARGS ("-qRexample.com") },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      RmOptions opts;

      parse_ok (cases[i].args, &opts);
      assert_ignored (&opts, cases[i].ignored);
      g_assert_cmpuint (opts.recipients->len, ==, 0);
      rm_options_clear (&opts);
    }
}

/* Every entry of the table in cmdline.c, as the help shows it. */
static const char *const ignored_shown[] = {
  "-Am, -Ac",
  "-c",
  "-eX",
  "-G",
  "-h N",
  "-L label",
  "-m",
  "-n",
  "-O option=value",
  "-p protocol",
  "-s",
  "-U",
  "-x",
  "-X logfile",
  "-o7, -o8",
  "-oAfile",
  "-oem, -oep, -oeq, -oew, -oee",
  "-oLn",
  "-om",
  "-oXvalue",
  "-qRsite, -qSsite",
};

static void
test_help (void)
{
  const char *help = rm_cmdline_help ();
  const char *list = strstr (help, "Accepted and ignored:\n");
  g_auto (GStrv) lines = NULL;

  g_assert_nonnull (list);
  g_assert_true (g_str_has_suffix (help, "\n"));
  g_assert_true (help == rm_cmdline_help ());

  for (gsize i = 0; i < G_N_ELEMENTS (ignored_shown); i++)
    {
      g_autofree char *line = g_strdup_printf ("\n  %s ", ignored_shown[i]);
      g_autofree char *alone = g_strdup_printf ("\n  %s\n", ignored_shown[i]);

      if (strstr (list, line) == NULL && strstr (list, alone) == NULL)
        g_error ("--help lacks %s", ignored_shown[i]);
    }

  for (const char *const *flag = (const char *const[]){ "-t",
                                                        "-i, -oi",
                                                        "-f ADDR",
                                                        "-F NAME",
                                                        "-B 7BIT|8BITMIME",
                                                        "-N",
                                                        "-R hdrs|full",
                                                        "-V ENVID",
                                                        "-odb",
                                                        "-odi",
                                                        "-odq",
                                                        "-C FILE",
                                                        "-v",
                                                        "-bm",
                                                        "-bp",
                                                        "-bi",
                                                        "-bs",
                                                        "-q",
                                                        "--help",
                                                        "--version",
                                                        "--check-config",
                                                        "--test [SERVER...]",
                                                        "--send-to ADDR",
                                                        "--status",
                                                        "--delete ID",
                                                        "-qIID",
                                                        "--",
                                                        NULL };
       *flag != NULL; flag++)
    {
      g_autofree char *line = g_strdup_printf ("\n  %s", *flag);
      g_assert_nonnull (strstr (help, line));
    }

  lines = g_strsplit (help, "\n", -1);
  for (gsize i = 0; lines[i] != NULL; i++)
    if (g_utf8_strlen (lines[i], -1) > 79
        && strstr (lines[i], RM_SYSCONFDIR) == NULL)
      g_error ("help line too long: %s", lines[i]);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/cmdline/cases/all-parse", test_cases_all_parse);
  g_test_add_func ("/cmdline/cases/php", test_case_php);
  g_test_add_func ("/cmdline/cases/git", test_case_git);
  g_test_add_func ("/cmdline/cases/mutt", test_case_mutt);
  g_test_add_func ("/cmdline/cases/cron", test_case_cron);
  g_test_add_func ("/cmdline/cases/misc", test_case_misc);
  g_test_add_func ("/cmdline/cases/unknown-y", test_case_unknown_y);
  g_test_add_func ("/cmdline/values/glued-and-separate",
                   test_glued_and_separate);
  g_test_add_func ("/cmdline/values/good", test_values);
  g_test_add_func ("/cmdline/values/bad", test_bad_values);
  g_test_add_func ("/cmdline/o-options", test_o_options);
  g_test_add_func ("/cmdline/queue-run", test_queue_run);
  g_test_add_func ("/cmdline/interval", test_interval);
  g_test_add_func ("/cmdline/grouped", test_grouped);
  g_test_add_func ("/cmdline/end-of-options", test_end_of_options);
  g_test_add_func ("/cmdline/unknown", test_unknown);
  g_test_add_func ("/cmdline/missing-argument", test_missing_argument);
  g_test_add_func ("/cmdline/program-names", test_program_names);
  g_test_add_func ("/cmdline/modes", test_modes);
  g_test_add_func ("/cmdline/ignored", test_ignored_flags);
  g_test_add_func ("/cmdline/help", test_help);

  return g_test_run ();
}
