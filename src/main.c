/* rampmail: the sendmail-compatible front end. main() parses the command
 * line, reads the configuration and runs one mode; it is the only place
 * that exits, and errors become sysexits codes through rm_error_exit_code.
 */
#include "config.h"

#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "aliases.h"
#include "cmdline.h"
#include "conf.h"
#include "deliver.h"
#include "errors.h"
#include "log.h"
#include "intake.h"
#include "mime.h"
#include "modules.h"
#include "secret.h"
#include "privs.h"
#include "runner.h"
#include "smtpd.h"
#include "status.h"
#include "submit.h"

static char *
age_text (gint64 seconds)
{
  if (seconds < 120)
    return g_strdup_printf ("%" G_GINT64_FORMAT "s", seconds);
  if (seconds < 7200)
    return g_strdup_printf ("%" G_GINT64_FORMAT "m", seconds / 60);
  if (seconds < 172800)
    return g_strdup_printf ("%" G_GINT64_FORMAT "h", seconds / 3600);
  return g_strdup_printf ("%" G_GINT64_FORMAT "d", seconds / 86400);
}

static void
list_entry (RmContext *ctx, RmEntry *entry, gint64 now)
{
  g_autofree char *data = g_build_filename (rm_queue_dir (ctx->queue), "data",
                                            entry->id, NULL);
  g_autofree char *age = age_text (MAX (now - entry->created, 0));
  g_autofree char *next = NULL;
  GStatBuf st;

  if (g_stat (data, &st) < 0)
    st.st_size = 0;
  printf ("%-28s %9lld  %5s  <%s>\n", entry->id, (long long) st.st_size, age,
          entry->sender);
  if (rm_queue_data_missing (ctx->queue, entry->id))
    printf ("    (corrupt: its data file is missing; the next queue run "
            "moves it to corrupt/)\n");
  if (entry->last_error != NULL)
    {
      g_autofree char *reason = rm_log_escape (entry->last_error);

      printf ("    (%s)\n", reason);
    }
  if (entry->next_attempt > now)
    {
      next = age_text (entry->next_attempt - now);
      printf ("    (attempts: %u, next attempt in %s)\n", entry->attempts,
              next);
    }
  else if (entry->attempts > 0)
    printf ("    (attempts: %u, due now)\n", entry->attempts);
  for (guint k = 0; k < entry->rcpts->len; k++)
    printf ("    %s\n", (char *) entry->rcpts->pdata[k]);
}

static int
list_queue (RmContext *ctx, GError **error)
{
  g_autoptr (GPtrArray) ids = rm_queue_list (ctx->queue, error);
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  guint shown = 0;

  if (ids == NULL)
    return -1;
  for (guint i = 0; i < ids->len; i++)
    {
      const char *id = ids->pdata[i];
      g_autoptr (GError) local = NULL;
      g_autoptr (RmEntry) entry = rm_queue_load (ctx->queue, id, &local);

      /* Gone meanwhile (delivered): nothing to show. */
      if (entry == NULL && !rm_queue_exists (ctx->queue, id))
        continue;
      if (shown++ == 0)
        printf ("%-28s %9s  %5s  %s\n", "Queue ID", "Size", "Age",
                "Sender / Recipients");
      if (entry != NULL)
        list_entry (ctx, entry, now);
      else
        {
          g_autofree char *why = rm_log_escape (local ? local->message : "");

          printf ("%-28s (corrupt: %s; the next queue run moves it to "
                  "corrupt/)\n",
                  id, why);
        }
    }
  if (shown == 0)
    printf ("Mail queue is empty\n");
  else
    printf ("-- %u messages\n", shown);
  return EX_OK;
}

static int
delete_entries (RmContext *ctx, const RmOptions *opts, GError **error)
{
  int status = EX_OK;

  for (guint i = 0; i < opts->recipients->len; i++)
    {
      const char *id = opts->recipients->pdata[i];
      g_autoptr (GError) local = NULL;
      int fd = -1;

      if (rm_queue_valid_id (id) && rm_queue_exists (ctx->queue, id))
        fd = rm_queue_lock (ctx->queue, id, &local);
      if (fd < 0 && local == NULL && rm_queue_valid_id (id)
          && rm_queue_data_missing (ctx->queue, id))
        {
          /* A corrupt entry without its data: its envelope goes. */
          if (rm_queue_remove (ctx->queue, id, &local))
            {
              rm_log_info ("%s: deleted by uid %u (its data file was "
                           "missing)",
                           id, (unsigned) getuid ());
              printf ("%s: deleted\n", id);
              continue;
            }
        }
      if (fd < 0)
        {
          fprintf (stderr, "rampmail: %s: %s\n", id,
                   local ? local->message
                         : "no such queue entry, or it is being delivered");
          status = EX_NOINPUT;
          continue;
        }
      if (rm_queue_remove (ctx->queue, id, &local))
        {
          rm_log_info ("%s: deleted by uid %u", id, (unsigned) getuid ());
          printf ("%s: deleted\n", id);
        }
      else
        {
          fprintf (stderr, "rampmail: %s: %s\n", id, local->message);
          status = rm_error_exit_code (local);
        }
      close (fd);
    }
  return status;
}

static int
run_queue (RmContext *ctx, const RmOptions *opts, GError **error)
{
  RmDeliverStats stats = { 0 };
  guint interval;

  if (opts->queue_interval != NULL)
    {
      interval = rm_cmdline_interval_seconds (opts->queue_interval, error);
      if (interval == 0 || !rm_runner_every (ctx, interval, error))
        return -1;
      return EX_OK;
    }
  if (opts->queue_id != NULL
      && (!rm_queue_valid_id (opts->queue_id)
          || !rm_queue_exists (ctx->queue, opts->queue_id)))
    {
      g_set_error (error, RM_ERROR, RM_ERROR_USAGE, "no queue entry %s",
                   opts->queue_id);
      return -1;
    }
  if (!rm_runner_flush (ctx, opts->queue_id, &stats, error))
    return -1;
  rm_log_info ("queue run: sent=%u deferred=%u failed=%u busy=%u", stats.sent,
               stats.deferred, stats.failed, stats.busy);
  if (stats.failed > 0)
    rm_runner_kick (ctx); /* bounces wait */
  return EX_OK;
}

static int
check_config (RmConfig *config, GError **error)
{
  g_autoptr (GError) mime_error = NULL;

  for (guint i = 0; i < config->servers->len; i++)
    {
      RmServerConf *srv = config->servers->pdata[i];

      if (rm_modules_load (config->plugin_dir, RM_PLUGIN_TRANSPORT,
                           srv->transport, error)
          == NULL)
        {
          g_prefix_error (error, "%s: [server %s] transport: ", config->file,
                          srv->name);
          return -1;
        }
    }
  for (guint i = 0; i < config->servers->len; i++)
    {
      RmServerConf *srv = config->servers->pdata[i];

      if (strcmp (srv->ramp.warmup, "none") != 0
          && rm_modules_load (config->plugin_dir, RM_PLUGIN_WARMUP,
                              srv->ramp.warmup, error)
                 == NULL)
        {
          g_prefix_error (error, "%s: [server %s] warmup: ", config->file,
                          srv->name);
          return -1;
        }
    }
  if (rm_modules_load (config->plugin_dir, RM_PLUGIN_SELECTOR,
                       config->selector, error)
      == NULL)
    {
      g_prefix_error (error, "%s: [rampmail] selector: ", config->file);
      return -1;
    }
  if (!rm_mime_check_available (&mime_error))
    {
      g_set_error (error, RM_ERROR, RM_ERROR_CONFIG,
                   "%s: [rampmail] plugin_dir: %s", config->file,
                   mime_error->message);
      return -1;
    }
  printf ("%s: the configuration is valid (%u servers)\n", config->file,
          config->servers->len);
  return EX_OK;
}

/* A server name given to --test that names no server. */
static const char *
unknown_server (const RmConfig *config, const RmOptions *opts)
{
  for (guint i = 0; i < opts->recipients->len; i++)
    {
      gboolean found = FALSE;

      for (guint k = 0; k < config->servers->len && !found; k++)
        found = strcmp (opts->recipients->pdata[i],
                        ((RmServerConf *) config->servers->pdata[k])->name)
                == 0;
      if (!found)
        return opts->recipients->pdata[i];
    }
  return NULL;
}

static gboolean
wanted (const RmOptions *opts, const RmServerConf *conf)
{
  if (opts->recipients->len == 0)
    return TRUE;
  for (guint i = 0; i < opts->recipients->len; i++)
    if (strcmp (opts->recipients->pdata[i], conf->name) == 0)
      return TRUE;
  return FALSE;
}

/* A short message through one server, outside the queue. */
static gboolean
send_test (const RmConfig *config, const RmServerConf *conf,
           const RmTransportOps *ops, const RmServer *srv, const char *to,
           GString *report)
{
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *date = rm_intake_format_date (now);
  g_autofree char *from = conf->user && strchr (conf->user, '@')
                              ? g_strdup (conf->user)
                              : g_strdup_printf ("rampmail-test@%s",
                                                 config->domain);
  g_autofree char *text = g_strdup_printf (
      "From: <%s>\r\nTo: <%s>\r\nSubject: rampmail test through %s\r\n"
      "Date: %s\r\n\r\nThis message tests the server %s (%s:%u).\r\n",
      from, to, conf->name, date, conf->name, conf->host, conf->port);
  g_autoptr (GError) error = NULL;
  RmRecipient rcpt = { to, RM_RESULT_PENDING, 0, NULL };
  RmMessage msg = { 0 };
  RmMessage *msgs[] = { &msg };
  RmAttempt attempt = { 0 };
  gboolean ok;
  int fd = memfd_create ("rampmail-test", MFD_CLOEXEC);

  if (fd < 0 || write (fd, text, strlen (text)) != (ssize_t) strlen (text))
    {
      g_string_append_printf (report, "  test message: FAILED: %s\n",
                              g_strerror (errno));
      if (fd >= 0)
        close (fd);
      return FALSE;
    }
  msg = (RmMessage){ .queue_id = "test",
                     .sender = from,
                     .rcpts = &rcpt,
                     .n_rcpts = 1,
                     .body = RM_BODY_7BIT,
                     .data_fd = fd,
                     .size = (gint64) strlen (text) };
  ok = ops->send (srv, msgs, 1, &attempt, &error)
       && rcpt.result == RM_RESULT_OK;
  if (ok)
    g_string_append_printf (report, "  test message: sent to %s (%d %s)\n",
                            to, rcpt.smtp_code, rcpt.reply ? rcpt.reply : "");
  else
    g_string_append_printf (report, "  test message: FAILED: %d %s\n",
                            rcpt.smtp_code ? rcpt.smtp_code
                                           : attempt.smtp_code,
                            error           ? error->message
                            : rcpt.reply    ? rcpt.reply
                            : attempt.reply ? attempt.reply
                                            : "not sent");
  g_free (rcpt.reply);
  g_free (attempt.reply);
  close (fd);
  return ok;
}

/* --test: one server. Returns TRUE if it works. */
static gboolean
test_server (const RmConfig *config, const RmServerConf *conf,
             const RmOptions *opts, GString *summary)
{
  g_autoptr (GString) report = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  const RmTransportOps *ops;
  char *password = NULL;
  gboolean ok = FALSE;
  RmServer srv;

  ops = rm_modules_load (config->plugin_dir, RM_PLUGIN_TRANSPORT,
                         conf->transport, &error);
  if (ops != NULL && conf->user != NULL)
    password = rm_secret_read (conf, &error);
  if (ops != NULL && (conf->user == NULL || password != NULL))
    {
      rm_server_view (config, conf, password, &srv);
      ok = ops->verify (&srv, report, &error);
      if (ok && opts->send_to != NULL)
        ok = send_test (config, conf, ops, &srv, opts->send_to, report);
    }
  rm_secret_free (password);

  printf ("[server %s] %s:%u\n%s", conf->name, conf->host, conf->port,
          report->str);
  if (ok)
    g_string_append_printf (summary, "%s: ok\n", conf->name);
  else
    g_string_append_printf (summary, "%s: FAILED: %s\n", conf->name,
                            error ? error->message : "see above");
  return ok;
}

static int
test_servers (RmConfig *config, const RmOptions *opts, GError **error)
{
  g_autoptr (GString) summary = g_string_new (NULL);
  const char *unknown = unknown_server (config, opts);
  int status = EX_OK;
  guint tested = 0;

  if (unknown != NULL)
    {
      g_autofree char *shown = rm_log_escape (unknown);

      g_set_error (error, RM_ERROR, RM_ERROR_USAGE, "no [server %s] in %s",
                   shown, config->file);
      return -1;
    }
  for (guint i = 0; i < config->servers->len; i++)
    {
      RmServerConf *conf = config->servers->pdata[i];

      if (!wanted (opts, conf))
        continue;
      tested++;
      if (!test_server (config, conf, opts, summary))
        status = EX_UNAVAILABLE;
    }
  if (tested == 0)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
                   "no server of that name in %s", config->file);
      return -1;
    }
  printf ("\n%s", summary->str);
  return status;
}

static int
check_aliases (RmConfig *config, GError **error)
{
  g_autoptr (RmAliases) aliases = rm_aliases_load (config->aliases, error);

  if (aliases == NULL)
    return -1;
  printf ("%s: %u aliases, valid; rampmail reads the file directly, "
          "there is nothing to rebuild\n",
          config->aliases, rm_aliases_count (aliases));
  return EX_OK;
}

static int
run_mode (RmOptions *opts, RmConfig *config, GError **error)
{
  RmContext ctx;
  int status;

  switch (opts->mode)
    {
    case RM_MODE_CHECK_CONFIG:
      return check_config (config, error);
    case RM_MODE_TEST_SERVERS:
      return test_servers (config, opts, error);
    case RM_MODE_ALIASES:
      return check_aliases (config, error);
    default:
      break;
    }
  if (!rm_context_init (&ctx, config, error))
    {
      rm_context_clear (&ctx);
      return -1;
    }
  if (opts->mode == RM_MODE_LIST_QUEUE)
    status = list_queue (&ctx, error);
  else if (opts->mode == RM_MODE_QUEUE_RUN)
    status = run_queue (&ctx, opts, error);
  else if (opts->mode == RM_MODE_DELETE)
    status = delete_entries (&ctx, opts, error);
  else if (opts->mode == RM_MODE_STATUS)
    status = rm_status_print (&ctx, error);
  else if (opts->mode == RM_MODE_SMTP_STDIO)
    status = rm_smtpd_run (&ctx, opts, error);
  else
    status = rm_submit (&ctx, opts, error);
  rm_context_clear (&ctx);
  return status;
}

static int
fail (GError *error)
{
  int code = rm_error_exit_code (error);

  fprintf (stderr, "rampmail: %s\n", error->message);
  g_error_free (error);
  return code;
}

int
main (int argc, char **argv)
{
  RmOptions opts = { 0 };
  g_autoptr (RmConfig) config = NULL;
  GError *error = NULL;
  int status;

  signal (SIGPIPE, SIG_IGN);
  /* Queue, state and log files are for rampmail's group, never others. */
  umask (0007);
  rm_log_init (NULL);
  if (!rm_cmdline_parse (argc, argv, &opts, &error))
    {
      rm_options_clear (&opts);
      fprintf (stderr, "rampmail: try --help\n");
      return fail (error);
    }
  /* Another configuration from a caller who is not root gets no group
   * rights: it could name the group's queue, state or password files. */
  if ((opts.config_file != NULL && getuid () != 0
       && !rm_privs_trusted_file (opts.config_file))
      || opts.mode == RM_MODE_HELP || opts.mode == RM_MODE_VERSION)
    rm_privs_drop ();
  if (opts.mode == RM_MODE_HELP || opts.mode == RM_MODE_VERSION)
    {
      fputs (opts.mode == RM_MODE_HELP ? rm_cmdline_help ()
                                       : PACKAGE_STRING "\n",
             stdout);
      rm_options_clear (&opts);
      return EX_OK;
    }

  config = rm_config_load (opts.config_file ? opts.config_file
                                            : rm_config_default_path (),
                           &error);
  if (config == NULL)
    {
      rm_options_clear (&opts);
      return fail (error);
    }
  rm_log_init (config->log_file);
  rm_log_set_stderr (TRUE, opts.verbose);
  rm_mime_set_module_dir (config->plugin_dir);

  status = run_mode (&opts, config, &error);
  if (status < 0 && opts.mode == RM_MODE_SEND)
    {
      /* Callers such as cron and PHP often drop standard error: a refused
       * message is logged as well (once on standard error, by fail). */
      g_autofree char *why = rm_log_escape (error->message);

      rm_log_set_stderr (FALSE, FALSE);
      rm_log_warn ("message refused, not queued (uid %u): %s",
                   (unsigned) getuid (), why);
    }
  rm_options_clear (&opts);
  if (status < 0)
    return fail (error);
  return status;
}
