/* Delivery of queued entries; see deliver.h. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deliver.h"
#include "errors.h"
#include "log.h"
#include "modules.h"

gboolean
rm_context_init (RmContext *ctx, RmConfig *config, GError **error)
{
  memset (ctx, 0, sizeof *ctx);
  ctx->config = config;
  ctx->queue = rm_queue_open (config->queue_dir, error);
  if (ctx->queue == NULL)
    return FALSE;
  ctx->selector = rm_modules_load (config->plugin_dir, RM_PLUGIN_SELECTOR,
                                   config->selector, error);
  if (ctx->selector == NULL)
    return FALSE;
  ctx->tz = config->timezone ? g_time_zone_new_identifier (config->timezone)
                             : NULL;
  if (ctx->tz == NULL)
    ctx->tz = g_time_zone_new_local ();
  ctx->rnd = g_rand_new ();
  return TRUE;
}

void
rm_context_clear (RmContext *ctx)
{
  g_clear_pointer (&ctx->queue, rm_queue_free);
  g_clear_pointer (&ctx->state, rm_state_free);
  g_clear_pointer (&ctx->tz, g_time_zone_unref);
  g_clear_pointer (&ctx->rnd, g_rand_free);
}

char *
rm_context_today (const RmContext *ctx)
{
  g_autoptr (GDateTime) now = g_date_time_new_now (ctx->tz);

  return g_date_time_format (now, "%Y-%m-%d");
}

/* ---- one attempt on one server ----------------------------------------- */

typedef struct {
  RmContext *ctx;
  RmEntry *entry;
  int data_fd;
  gint64 size;
  RmDeliverStats *stats;
  GPtrArray *failed;          /* refused recipients */
  GPtrArray *failed_replies;  /* their replies */
  gboolean no_failover;       /* outcome unknown: wait for a later run */
  GHashTable *tried;          /* server names tried in this run */
} Job;

static const char *
result_word (RmResultCode code)
{
  switch (code)
    {
    case RM_RESULT_OK:
      return "sent";
    case RM_RESULT_PERMFAIL:
      return "bounced";
    case RM_RESULT_UNKNOWN:
      return "unknown";
    case RM_RESULT_TEMPFAIL:
    case RM_RESULT_PENDING:
      break;
    }
  return "deferred";
}

static void
log_recipient (const Job *job, const RmServerConf *srv, const char *rcpt,
               RmResultCode code, const char *reply)
{
  g_autofree char *to = rm_log_escape (rcpt);
  g_autofree char *text = rm_log_escape (reply ? reply : "");
  const char *word = result_word (code);

  if (code == RM_RESULT_OK)
    rm_log_info ("%s: to=<%s> relay=%s[%s]:%u status=%s reply=\"%s\"",
                 job->entry->id, to, srv->name, srv->host, srv->port, word,
                 text);
  else
    rm_log_warn ("%s: to=<%s> relay=%s[%s]:%u status=%s reply=\"%s\"",
                 job->entry->id, to, srv->name, srv->host, srv->port, word,
                 text);
}

/* Servers of the configuration not yet tried for this job. */
static GPtrArray *
untried_servers (Job *job)
{
  GPtrArray *servers = job->ctx->config->servers;
  GPtrArray *out = g_ptr_array_new ();

  for (guint i = 0; i < servers->len; i++)
    {
      RmServerConf *srv = servers->pdata[i];

      if (!g_hash_table_contains (job->tried, srv->name))
        g_ptr_array_add (out, srv);
    }
  return out;
}

static RmServerConf *
choose_server (Job *job, GError **error)
{
  RmContext *ctx = job->ctx;
  g_autoptr (GPtrArray) servers = untried_servers (job);
  g_autoptr (GPtrArray) names = g_ptr_array_new ();
  g_autofree char *day = NULL;
  guint pick;

  if (servers->len == 0)
    return NULL;
  if (ctx->state == NULL)
    ctx->state = rm_state_open (ctx->config->state_dir, error);
  if (ctx->state == NULL)
    return NULL;
  for (guint i = 0; i < servers->len; i++)
    g_ptr_array_add (names, ((RmServerConf *) servers->pdata[i])->name);
  day = rm_context_today (ctx);
  if (!rm_state_choose (ctx->state, day, names, ctx->selector, ctx->rnd,
                        &pick, error))
    return NULL;
  g_hash_table_add (job->tried, ((RmServerConf *) servers->pdata[pick])->name);
  return servers->pdata[pick];
}

static void
server_view (const RmContext *ctx, const RmServerConf *conf, RmServer *srv)
{
  srv->name = conf->name;
  srv->host = conf->host;
  srv->port = conf->port;
  srv->helo = ctx->config->hostname;
  srv->connect_timeout = conf->connect_timeout;
  srv->timeout = conf->timeout;
}

/* Sorts each recipient of the attempt into sent, failed or kept. Returns
 * TRUE if some recipient failed temporarily (worth another server). */
static gboolean
sort_outcomes (Job *job, const RmServerConf *srv, RmRecipient *rcpts,
               guint n, const RmAttempt *attempt)
{
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  gboolean temporary = FALSE;

  for (guint i = 0; i < n; i++)
    {
      RmResultCode code = rcpts[i].result;
      const char *reply = rcpts[i].reply;

      if (code == RM_RESULT_PENDING)
        {
          code = attempt->result == RM_RESULT_PENDING ? RM_RESULT_TEMPFAIL
                                                      : attempt->result;
          reply = attempt->reply;
        }
      log_recipient (job, srv, rcpts[i].address, code, reply);
      if (code == RM_RESULT_OK)
        {
          job->stats->sent++;
          continue;
        }
      if (code == RM_RESULT_PERMFAIL)
        {
          g_ptr_array_add (job->failed, g_strdup (rcpts[i].address));
          g_ptr_array_add (job->failed_replies,
                           g_strdup (reply ? reply : "refused"));
          continue;
        }
      if (code == RM_RESULT_UNKNOWN)
        job->no_failover = TRUE;
      else
        temporary = TRUE;
      g_free (job->entry->last_error);
      job->entry->last_error = g_strdup_printf ("%s: %s", srv->name,
                                                reply ? reply : "failed");
      g_ptr_array_add (keep, g_strdup (rcpts[i].address));
    }
  g_ptr_array_set_size (job->entry->rcpts, 0);
  for (guint i = 0; i < keep->len; i++)
    g_ptr_array_add (job->entry->rcpts, g_strdup (keep->pdata[i]));
  return temporary;
}

/* One attempt on one server; returns TRUE if another server should try
 * the recipients that are left. */
static gboolean
attempt_server (Job *job, const RmServerConf *conf)
{
  RmContext *ctx = job->ctx;
  g_autoptr (GError) error = NULL;
  const RmTransportOps *ops;
  guint n = job->entry->rcpts->len;
  g_autofree RmRecipient *rcpts = g_new0 (RmRecipient, n);
  RmAttempt attempt = { 0 };
  RmMessage msg = { 0 };
  RmMessage *msgs[] = { &msg };
  RmServer srv;
  gboolean again;

  server_view (ctx, conf, &srv);
  for (guint i = 0; i < n; i++)
    rcpts[i].address = job->entry->rcpts->pdata[i];
  msg.queue_id = job->entry->id;
  msg.sender = job->entry->sender;
  msg.rcpts = rcpts;
  msg.n_rcpts = n;
  msg.body = job->entry->body;
  msg.data_fd = job->data_fd;
  msg.size = job->size;

  ops = rm_modules_load (ctx->config->plugin_dir, RM_PLUGIN_TRANSPORT,
                         conf->transport, &error);
  if (ops != NULL && lseek (job->data_fd, 0, SEEK_SET) == 0
      && !ops->send (&srv, msgs, 1, &attempt, &error))
    attempt.result = RM_RESULT_TEMPFAIL;
  if (ops == NULL)
    attempt.result = RM_RESULT_TEMPFAIL;
  if (error != NULL && attempt.reply == NULL)
    attempt.reply = g_strdup (error->message);

  again = sort_outcomes (job, conf, rcpts, n, &attempt);
  for (guint i = 0; i < n; i++)
    g_free (rcpts[i].reply);
  g_free (attempt.reply);
  return again;
}

/* ---- one entry ---------------------------------------------------------- */

static gboolean
finish_entry (Job *job, GError **error)
{
  RmQueue *queue = job->ctx->queue;
  RmEntry *entry = job->entry;

  if (job->failed->len > 0
      && !rm_queue_keep_failed (queue, entry, job->failed,
                                job->failed_replies, error))
    return FALSE;
  job->stats->failed += job->failed->len;
  job->stats->deferred += entry->rcpts->len;
  if (entry->rcpts->len == 0)
    {
      rm_log_info ("%s: removed", entry->id);
      return rm_queue_remove (queue, entry->id, error);
    }
  entry->attempts++;
  entry->last_attempt = g_get_real_time () / G_USEC_PER_SEC;
  return rm_queue_update (queue, entry, error);
}

static gboolean
run_job (Job *job, GError **error)
{
  RmServerConf *srv;
  GError *choose_error = NULL;

  while (job->entry->rcpts->len > 0 && !job->no_failover)
    {
      srv = choose_server (job, &choose_error);
      if (srv == NULL)
        break;
      if (!attempt_server (job, srv))
        break;
    }
  if (choose_error != NULL)
    {
      rm_log_warn ("%s: no server chosen: %s", job->entry->id,
                   choose_error->message);
      g_free (job->entry->last_error);
      job->entry->last_error = g_strdup (choose_error->message);
      g_error_free (choose_error);
    }
  return finish_entry (job, error);
}

gboolean
rm_deliver_entry (RmContext *ctx, const char *id, RmDeliverStats *stats,
                  GError **error)
{
  g_autoptr (GPtrArray) failed = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) replies = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GHashTable) tried = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (RmEntry) entry = NULL;
  struct stat st;
  gboolean ok;
  Job job = { 0 };
  int fd;

  fd = rm_queue_lock (ctx->queue, id, error);
  if (fd < 0)
    {
      if (error != NULL && *error != NULL)
        return FALSE;
      stats->busy++;
      return TRUE;
    }
  entry = rm_queue_load (ctx->queue, id, error);
  if (entry == NULL || fstat (fd, &st) < 0)
    {
      close (fd);
      return FALSE;
    }

  job.ctx = ctx;
  job.entry = entry;
  job.data_fd = fd;
  job.size = st.st_size;
  job.stats = stats;
  job.failed = failed;
  job.failed_replies = replies;
  job.tried = tried;
  ok = run_job (&job, error);
  close (fd);
  return ok;
}

gboolean
rm_deliver_queue (RmContext *ctx, RmDeliverStats *stats, GError **error)
{
  g_autoptr (GPtrArray) ids = rm_queue_list (ctx->queue, error);

  if (ids == NULL)
    return FALSE;
  for (guint i = 0; i < ids->len; i++)
    {
      g_autoptr (GError) local = NULL;

      if (!rm_deliver_entry (ctx, ids->pdata[i], stats, &local))
        rm_log_warn ("%s: %s", (char *) ids->pdata[i], local->message);
    }
  return TRUE;
}
