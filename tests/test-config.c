/* Unit tests of the configuration file (src/conf.c). */
#include "config.h"

#include <string.h>
#include <sysexits.h>

#include <glib/gstdio.h>

#include "conf.h"
#include "errors.h"

typedef struct {
  char *dir;          /* a fresh folder per test */
  GPtrArray *written; /* files to remove afterwards */
} Fixture;

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  f->dir = g_dir_make_tmp ("test-config-XXXXXX", &error);
  g_assert_no_error (error);
  f->written = g_ptr_array_new_with_free_func (g_free);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  for (guint i = 0; i < f->written->len; i++)
    g_unlink (g_ptr_array_index (f->written, i));
  g_rmdir (f->dir);
  g_ptr_array_unref (f->written);
  g_free (f->dir);
}

/* Writes text to DIR/name and returns the path (owned by the fixture). */
static const char *
write_file (Fixture *f, const char *name, const char *text)
{
  g_autoptr (GError) error = NULL;
  char *path = g_build_filename (f->dir, name, NULL);

  g_file_set_contents (path, text, -1, &error);
  g_assert_no_error (error);
  g_ptr_array_add (f->written, path);
  return path;
}

static RmConfig *
load_ok (const char *path)
{
  g_autoptr (GError) error = NULL;
  RmConfig *config = rm_config_load (path, &error);

  if (config == NULL)
    g_error ("unexpected configuration error:\n%s", error->message);
  return config;
}

/* Loads path, expects RM_ERROR_CONFIG, returns the message. */
static char *
load_fails (const char *path)
{
  g_autoptr (GError) error = NULL;
  RmConfig *config = rm_config_load (path, &error);

  g_assert_null (config);
  g_assert_error (error, RM_ERROR, RM_ERROR_CONFIG);
  g_assert_cmpint (rm_error_exit_code (error), ==, EX_CONFIG);
  return g_strdup (error->message);
}

static void
assert_contains (const char *text, const char *want)
{
  if (strstr (text, want) == NULL)
    g_error ("\"%s\"\nlacks \"%s\"", text, want);
}

static guint
count_lines (const char *text)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  return g_strv_length (lines);
}

static RmServerConf *
server_at (const RmConfig *config, guint i)
{
  return g_ptr_array_index (config->servers, i);
}

/* ---- valid files ---------------------------------------------------------- */

static void
test_default_path (Fixture *f, gconstpointer data)
{
  g_assert_cmpstr (rm_config_default_path (), ==,
                   RM_SYSCONFDIR "/rampmail.conf");
}

static void
test_minimal (Fixture *f, gconstpointer data)
{
  const char *path = write_file (f, "rampmail.conf",
                                 "# one relay\n"
                                 "[server a]\n"
                                 "host = relay.example.org\n");
  g_autoptr (RmConfig) config = load_ok (path);
  RmServerConf *server;

  g_assert_cmpstr (config->file, ==, path);
  g_assert_cmpstr (config->queue_dir, ==, RM_LOCALSTATEDIR "/spool/rampmail");
  g_assert_cmpstr (config->state_dir, ==, RM_LOCALSTATEDIR "/lib/rampmail");
  g_assert_cmpstr (config->plugin_dir, ==, RM_PLUGINDIR);
  g_assert_cmpstr (config->aliases, ==, RM_SYSCONFDIR "/aliases");
  g_assert_cmpstr (config->selector, ==, "balanced");
  g_assert_nonnull (config->domain);
  g_assert_cmpstr (config->domain, !=, "");
  g_assert_cmpstr (config->hostname, ==, config->domain);
  g_assert_null (config->sender);
  g_assert_null (config->timezone);
  g_assert_null (config->log_file);
  g_assert_cmpint (config->delivery, ==, RM_DELIVERY_BACKGROUND);

  g_assert_cmpuint (config->servers->len, ==, 1);
  server = server_at (config, 0);
  g_assert_cmpstr (server->name, ==, "a");
  g_assert_cmpstr (server->host, ==, "relay.example.org");
  g_assert_cmpuint (server->port, ==, 25);
  g_assert_cmpint (server->tls, ==, RM_TLS_STARTTLS);
  g_assert_true (server->tls_verify);
  g_assert_null (server->user);
  g_assert_cmpstr (server->ramp.warmup, ==, "ramp");
  g_assert_cmpuint (server->ramp.start, ==, 20);
  g_assert_cmpuint (server->ramp.cap, ==, 500);
  g_assert_cmpstr (server->transport, ==, "smtp");
  g_assert_cmpuint (server->connect_timeout, ==, 30);
  g_assert_cmpuint (server->timeout, ==, 60);
}

static void
test_full (Fixture *f, gconstpointer data)
{
  const char *path = write_file (f, "full.conf",
                                 "[rampmail]\n"
                                 "queue_dir = /srv/q\n"
                                 "state_dir = /srv/state\n"
                                 "plugin_dir = /opt/rampmail/plugins\n"
                                 "domain = example.org\n"
                                 "hostname = mx1.example.org\n"
                                 "sender = robot@example.org\n"
                                 "aliases = /etc/mail/aliases\n"
                                 "selector = balanced\n"
                                 "timezone = UTC\n"
                                 "log_file = /var/log/rampmail.log\n"
                                 "delivery_mode = background\n"
                                 "\n"
                                 "[server relay-2]\n"
                                 "host = 127.0.0.1\n"
                                 "port = 2525\n"
                                 "tls = none\n"
                                 "transport = smtp\n"
                                 "connect_timeout = 5\n"
                                 "timeout = 3600\n"
                                 "\n"
                                 "[server relay.1_x]\n"
                                 "host = ::1\n"
                                 "port = 65535\n");
  g_autoptr (RmConfig) config = load_ok (path);
  RmServerConf *server;

  g_assert_cmpstr (config->queue_dir, ==, "/srv/q");
  g_assert_cmpstr (config->state_dir, ==, "/srv/state");
  g_assert_cmpstr (config->plugin_dir, ==, "/opt/rampmail/plugins");
  g_assert_cmpstr (config->domain, ==, "example.org");
  g_assert_cmpstr (config->hostname, ==, "mx1.example.org");
  g_assert_cmpstr (config->sender, ==, "robot@example.org");
  g_assert_cmpstr (config->aliases, ==, "/etc/mail/aliases");
  g_assert_cmpstr (config->selector, ==, "balanced");
  g_assert_cmpstr (config->timezone, ==, "UTC");
  g_assert_cmpstr (config->log_file, ==, "/var/log/rampmail.log");
  g_assert_cmpint (config->delivery, ==, RM_DELIVERY_BACKGROUND);

  /* File order. */
  g_assert_cmpuint (config->servers->len, ==, 2);
  server = server_at (config, 0);
  g_assert_cmpstr (server->name, ==, "relay-2");
  g_assert_cmpstr (server->host, ==, "127.0.0.1");
  g_assert_cmpuint (server->port, ==, 2525);
  g_assert_cmpuint (server->connect_timeout, ==, 5);
  g_assert_cmpuint (server->timeout, ==, 3600);
  server = server_at (config, 1);
  g_assert_cmpstr (server->name, ==, "relay.1_x");
  g_assert_cmpstr (server->host, ==, "::1");
  g_assert_cmpuint (server->port, ==, 65535);
}

static void
test_delivery_modes (Fixture *f, gconstpointer data)
{
  static const struct {
    const char *text;
    RmDelivery delivery;
  } modes[] = {
    { "interactive", RM_DELIVERY_INTERACTIVE },
    { "background", RM_DELIVERY_BACKGROUND },
    { "queue", RM_DELIVERY_QUEUE },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (modes); i++)
    {
      g_autofree char *text = g_strdup_printf (
          "[rampmail]\ndelivery_mode = %s\n[server a]\nhost = h\n",
          modes[i].text);
      g_autoptr (RmConfig) config = load_ok (write_file (f, "m.conf", text));

      g_assert_cmpint (config->delivery, ==, modes[i].delivery);
    }
}

static void
test_time_zones (Fixture *f, gconstpointer data)
{
  static const char *const zones[] = { "UTC", "+02:00", "Europe/Paris" };

  for (gsize i = 0; i < G_N_ELEMENTS (zones); i++)
    {
      g_autofree char *text = g_strdup_printf (
          "[rampmail]\ntimezone = %s\n[server a]\nhost = h\n", zones[i]);
      const char *path = write_file (f, "tz.conf", text);
      g_autoptr (GError) error = NULL;
      g_autoptr (RmConfig) config = rm_config_load (path, &error);

      if (config == NULL && strcmp (zones[i], "Europe/Paris") == 0)
        {
          g_test_message ("no tzdata here: %s", error->message);
          continue;
        }
      g_assert_no_error (error);
      g_assert_cmpstr (config->timezone, ==, zones[i]);
    }
}

static void
test_relative_paths (Fixture *f, gconstpointer data)
{
  const char *path = write_file (f, "rel.conf",
                                 "[rampmail]\n"
                                 "queue_dir = spool\n"
                                 "state_dir = ./state/\n"
                                 "plugin_dir = ../plugins\n"
                                 "aliases = etc/aliases\n"
                                 "log_file = log/rampmail.log\n"
                                 "[server a]\n"
                                 "host = h\n");
  g_autofree char *parent = g_path_get_dirname (f->dir);
  g_autofree char *want_queue = g_build_filename (f->dir, "spool", NULL);
  g_autofree char *want_state = g_build_filename (f->dir, "state", NULL);
  g_autofree char *want_plugins = g_build_filename (parent, "plugins", NULL);
  g_autofree char *want_aliases = g_build_filename (f->dir, "etc", "aliases",
                                                    NULL);
  g_autofree char *want_log = g_build_filename (f->dir, "log", "rampmail.log",
                                                NULL);
  g_autofree char *cwd = g_get_current_dir ();

  {
    g_autoptr (RmConfig) config = load_ok (path);

    g_assert_cmpstr (config->queue_dir, ==, want_queue);
    g_assert_cmpstr (config->state_dir, ==, want_state);
    g_assert_cmpstr (config->plugin_dir, ==, want_plugins);
    g_assert_cmpstr (config->aliases, ==, want_aliases);
    g_assert_cmpstr (config->log_file, ==, want_log);
  }

  /* A configuration named by a relative path (-C rel.conf) still gives
   * absolute paths, so a later chdir() changes nothing. */
  g_assert_cmpint (g_chdir (f->dir), ==, 0);
  {
    g_autoptr (RmConfig) config = load_ok ("rel.conf");

    g_assert_cmpstr (config->file, ==, "rel.conf");
    g_assert_cmpstr (config->queue_dir, ==, want_queue);
  }
  g_assert_cmpint (g_chdir (cwd), ==, 0);
}

/* ---- one bad value at a time ---------------------------------------------- */

static const struct {
  const char *group; /* "rampmail" or "server a" */
  const char *key;
  const char *value;
  const char *want; /* after "FILE: [group] key: " */
} bad_values[] = {
  { "server a", "port", "x", "not a number: x" },
  { "server a", "port", "-1", "not a number: -1" },
  { "server a", "port", "0", "out of range (1 to 65535): 0" },
  { "server a", "port", "65536", "out of range (1 to 65535): 65536" },
  { "server a", "port", "99999999999999999999", "out of range" },
  { "server a", "port", "25 ", NULL }, /* GKeyFile strips: valid */
  { "server a", "tls", "starttls", NULL },
  { "server a", "tls", "implicit", NULL },
  { "server a", "tls", "ssl", "invalid value: ssl" },
  { "server a", "tls", "None", "invalid value: None" },
  { "server a", "user", "robot@example.org",
    "needs password_file or password_command" },
  { "server a", "password_file", "/etc/rampmail/a.pass", "set without user" },
  { "server a", "password_command", "pass show a", "set without user" },
  { "server a", "tls_verify", "maybe",
    "invalid value: maybe (use yes or no)" },
  { "server a", "tls_fingerprint", "sha1:00", "invalid value" },
  { "server a", "preset", "hotmail", "unknown preset: hotmail" },
  { "server a", "from", "alias", "invalid value: alias" },
  { "server a", "max_rcpts", "0", NULL },
  { "server a", "max_rcpts", "-1", "not a number" },
  { "server a", "hourly_share", "0", NULL },
  { "server a", "warmup_growth", "1", "invalid value: 1" },
  { "server a", "warmup_min_share", "1.5", "invalid value: 1.5" },
  { "server a", "warmup_schedule", "20,x", "day 2: not a number: x" },
  { "server a", "warmup_restart_after", "0", "out of range" },
  { "rampmail", "warmup_cap", "-5", "not a number" },
  { "server a", "transport", "SMTP", "invalid value: SMTP" },
  { "server a", "transport", "../smtp", "invalid value: ../smtp" },
  { "server a", "connect_timeout", "0", "out of range (1 to 3600): 0" },
  { "server a", "connect_timeout", "30s", "not a number: 30s" },
  { "server a", "timeout", "3601", "out of range (1 to 3600): 3601" },
  { "server a", "host", "relay example.org", "invalid value" },
  { "server a", "host", "relay\\texample.org", "invalid value" },
  { "server a", "host", "", "empty value" },
  { "server a", "hots", "x", "unknown key (known: preset, host, port" },
  { "server a", "host[fr]", "x", "unknown key" },
  { "rampmail", "selector", "../../tmp/evil", "invalid value" },
  { "rampmail", "selector", "Balanced", "invalid value" },
  { "rampmail", "timezone", "Mars/Olympus_Mons", "invalid value" },
  { "rampmail", "delivery_mode", "deferred", "invalid value: deferred" },
  { "rampmail", "domain", "-bad.example.org", "invalid value" },
  { "rampmail", "domain", "example..org", "invalid value" },
  { "rampmail", "hostname", "mx_1.example.org", "invalid value" },
  { "rampmail", "sender", "robot", "invalid value: robot" },
  { "rampmail", "sender", "<robot@example.org>", "invalid value" },
  { "rampmail", "queue_dir", "", "empty value" },
  { "rampmail", "log_file", "a\\qb", "invalid escape sequence" },
  { "rampmail", "log_file", "/var/log/\xff", "the value is not UTF-8" },
  { "rampmail", "queue_directory", "/x", "unknown key (known: queue_dir" },
};

static void
test_bad_values (Fixture *f, gconstpointer data)
{
  for (gsize i = 0; i < G_N_ELEMENTS (bad_values); i++)
    {
      const char *group = bad_values[i].group;
      const char *key = bad_values[i].key;
      gboolean in_server = strcmp (group, "server a") == 0;
      g_autofree char *text = NULL;
      g_autofree char *message = NULL;
      g_autofree char *want = NULL;
      const char *path;

      if (in_server)
        text = g_strdup_printf ("[server a]\n%s%s = %s\n",
                                strcmp (key, "host") == 0 ? "" : "host = h\n",
                                key, bad_values[i].value);
      else
        text = g_strdup_printf ("[rampmail]\n%s = %s\n[server a]\nhost = h\n",
                                key, bad_values[i].value);
      path = write_file (f, "bad.conf", text);
      g_test_message ("[%s] %s = %s", group, key, bad_values[i].value);

      if (bad_values[i].want == NULL)
        {
          rm_config_free (load_ok (path));
          continue;
        }
      message = load_fails (path);
      want = g_strdup_printf ("%s: [%s] %s: %s", path, group, key,
                              bad_values[i].want);
      if (!g_str_has_prefix (message, want))
        g_error ("\"%s\"\ndoes not start with \"%s\"", message, want);
      g_assert_cmpuint (count_lines (message), ==, 1);
    }
}

static void
test_tls_and_auth (Fixture *f, gconstpointer data)
{
  const char *path = write_file (f, "tls.conf",
                                 "[rampmail]\n"
                                 "warmup_cap = 300\n"
                                 "[server office]\n"
                                 "host = mail.example.org\n"
                                 "port = 587\n"
                                 "tls = starttls\n"
                                 "tls_fingerprint = SHA256:AB:CD:"
                                 "0123456789abcdef0123456789abcdef"
                                 "0123456789abcdef0123456789ab\n"
                                 "user = robot@example.org\n"
                                 "password_file = office.pass\n"
                                 "[server smtps]\n"
                                 "host = mail.example.org\n"
                                 "tls = implicit\n"
                                 "[server gmail]\n"
                                 "preset = gmail\n"
                                 "user = alice@gmail.com\n"
                                 "password_command = cat /dev/null\n"
                                 "warmup_schedule = 10, 20, 40\n");
  g_autoptr (GError) error = NULL;
  g_autoptr (RmConfig) config = rm_config_load (path, &error);
  RmServerConf *office, *smtps, *gmail;

  g_assert_no_error (error);
  office = config->servers->pdata[0];
  smtps = config->servers->pdata[1];
  gmail = config->servers->pdata[2];
  g_assert_cmpint (office->tls, ==, RM_TLS_STARTTLS);
  g_assert_cmpstr (office->tls_fingerprint, ==,
                   "sha256:abcd0123456789abcdef0123456789abcdef"
                   "0123456789abcdef0123456789ab");
  g_assert_true (g_str_has_suffix (office->password_file, "/office.pass"));
  g_assert_cmpuint (office->ramp.cap, ==, 300);
  g_assert_cmpint (smtps->tls, ==, RM_TLS_IMPLICIT);
  g_assert_cmpuint (smtps->port, ==, 465);
  g_assert_cmpstr (gmail->host, ==, "smtp.gmail.com");
  g_assert_cmpuint (gmail->port, ==, 587);
  g_assert_cmpuint (gmail->max_rcpts, ==, 100);
  g_assert_cmpint (gmail->from, ==, RM_FROM_ACCOUNT);
  g_assert_cmpuint (gmail->ramp.cap, ==, 500);
  g_assert_nonnull (gmail->ramp.schedule);
  g_assert_cmpuint (gmail->ramp.schedule->len, ==, 3);
  g_assert_cmpuint (g_array_index (gmail->ramp.schedule, guint, 2), ==, 40);
}

static void
test_gmail_needs_user (Fixture *f, gconstpointer data)
{
  const char *path = write_file (f, "gmail.conf",
                                 "[server g]\n"
                                 "preset = gmail\n"
                                 "tls = none\n"
                                 "tls_ca_file = /etc/ssl/x.pem\n");
  g_autofree char *message = load_fails (path);

  assert_contains (message, "[server g] user: missing");
  assert_contains (message, "[server g] tls_ca_file: set while tls = none");
}

static void
test_many_errors (Fixture *f, gconstpointer data)
{
  const char *path = write_file (f, "many.conf",
                                 "[rampmail]\n"
                                 "selector = Bad!\n"
                                 "delivery_mode = now\n"
                                 "[server a]\n"
                                 "host = h\n"
                                 "port = x\n"
                                 "user = bob\n"
                                 "password_file = p\n"
                                 "[server b]\n"
                                 "port = 26\n"
                                 "[mystery]\n"
                                 "x = 1\n");
  g_autofree char *message = load_fails (path);
  g_auto (GStrv) lines = g_strsplit (message, "\n", -1);

  g_assert_cmpuint (g_strv_length (lines), ==, 5);
  for (gsize i = 0; lines[i] != NULL; i++)
    g_assert_true (g_str_has_prefix (lines[i], path));
  assert_contains (message, "[rampmail] selector: invalid value: Bad!");
  assert_contains (message, "[rampmail] delivery_mode: invalid value: now");
  assert_contains (message, "[server a] port: not a number: x");
  assert_contains (message, "[server b] host: missing");
  assert_contains (message, "[mystery]: unknown group");
  g_assert_false (g_str_has_suffix (message, "\n"));
}

/* ---- groups and whole-file problems ------------------------------------ */

static void
test_groups (Fixture *f, gconstpointer data)
{
  static const struct {
    const char *text;
    const char *want;
  } cases[] = {
    { "[rampmail]\nqueue_dir = /q\n",
      "no [server NAME] group: at least one server is needed" },
    { "# nothing\n", "no [server NAME] group" },
    { "[server]\nhost = h\n", "[server]: a server group needs a name" },
    { "[server a b]\nhost = h\n", "[server a b]: invalid server name" },
    { "[server a/b]\nhost = h\n", "[server a/b]: invalid server name" },
    { "[servers a]\nhost = h\n[server a]\nhost = h\n",
      "[servers a]: unknown group" },
    { "[Rampmail]\n[server a]\nhost = h\n", "[Rampmail]: unknown group" },
    { "[server a]\nport = 25\n", "[server a] host: missing" },
    { "[server a]\nhost = h\nhost = h2\n",
      "[server a] host: set more than once" },
    { "[server a]\nhost = h\n[server a]\nport = 26\n",
      "[server a]: the group appears more than once" },
    { "host = h\n[server a]\n", "does not start with a group" },
    { "[server a]\nhost\n", "not a key-value pair" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      const char *path = write_file (f, "groups.conf", cases[i].text);
      g_autofree char *message = load_fails (path);
      g_autofree char *want = g_strdup_printf ("%s: ", path);

      g_test_message ("%s", cases[i].text);
      g_assert_true (g_str_has_prefix (message, want));
      assert_contains (message, cases[i].want);
    }
}

static void
test_missing_file (Fixture *f, gconstpointer data)
{
  g_autofree char *path = g_build_filename (f->dir, "absent.conf", NULL);
  g_autofree char *message = load_fails (path);
  g_autofree char *want = g_strdup_printf ("%s: cannot read: ", path);

  g_assert_true (g_str_has_prefix (message, want));

  g_free (message);
  message = load_fails (f->dir);
  assert_contains (message, f->dir);
}

/* The shipped example must stay valid; make check exports top_srcdir. */
static void
test_shipped_example (Fixture *f, gconstpointer data)
{
  const char *top = g_getenv ("top_srcdir");
  g_autofree char *path = NULL;
  g_autoptr (RmConfig) config = NULL;

  if (top == NULL)
    {
      g_test_skip ("top_srcdir is not set");
      return;
    }
  path = g_build_filename (top, "doc", "rampmail.conf.example", NULL);
  config = load_ok (path);
  g_assert_cmpuint (config->servers->len, ==, 2);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, func)                                                      \
  g_test_add (path, Fixture, NULL, fixture_set_up, func, fixture_tear_down)

  ADD ("/config/default-path", test_default_path);
  ADD ("/config/valid/minimal", test_minimal);
  ADD ("/config/valid/full", test_full);
  ADD ("/config/valid/delivery-modes", test_delivery_modes);
  ADD ("/config/valid/time-zones", test_time_zones);
  ADD ("/config/valid/relative-paths", test_relative_paths);
  ADD ("/config/valid/shipped-example", test_shipped_example);
  ADD ("/config/invalid/values", test_bad_values);
  ADD ("/config/valid/tls-and-auth", test_tls_and_auth);
  ADD ("/config/invalid/gmail-needs-user", test_gmail_needs_user);
  ADD ("/config/invalid/many-at-once", test_many_errors);
  ADD ("/config/invalid/groups", test_groups);
  ADD ("/config/invalid/missing-file", test_missing_file);

  return g_test_run ();
}
