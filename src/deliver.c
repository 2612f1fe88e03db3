/* Delivery runs; see deliver.h. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bounce.h"
#include "deliver.h"
#include "errors.h"
#include "log.h"
#include "modules.h"
#include "secret.h"

/* Entries locked and sent together; bounds open files and memory. */
#define BATCH_ENTRIES 200

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

static gint64
now_seconds (void)
{
  return g_get_real_time () / G_USEC_PER_SEC;
}

static gboolean
open_state (RmContext *ctx, GError **error)
{
  if (ctx->state == NULL)
    ctx->state = rm_state_open (ctx->config->state_dir, error);
  return ctx->state != NULL;
}

/* ---- jobs: one locked entry each ----------------------------------------- */

typedef struct {
  char *address;
  char *reply;
  char *server;
  char *host;
} Refusal;

typedef struct {
  RmEntry *entry;
  int fd;                 /* the entry's lock, and its data */
  gint64 size;
  GHashTable *tried;      /* server names tried in this run */
  GPtrArray *refusals;    /* Refusal *: refused for good in this run */
  gboolean attempted;     /* offered to a server in this run */
  gboolean retry_elsewhere; /* a recipient failed temporarily last round */
  gboolean no_failover;   /* outcome unknown: wait for a later run */
  gboolean finished;      /* recorded and unlocked; nothing left to do */
} Job;

static void
refusal_free (gpointer data)
{
  Refusal *r = data;

  g_free (r->address);
  g_free (r->reply);
  g_free (r->server);
  g_free (r->host);
  g_free (r);
}

static void
job_free (gpointer data)
{
  Job *job = data;

  if (job->fd >= 0)
    close (job->fd);
  rm_entry_free (job->entry);
  g_hash_table_unref (job->tried);
  g_ptr_array_unref (job->refusals);
  g_free (job);
}

static void
add_refusal (Job *job, const char *address, const char *reply,
             const RmServerConf *srv)
{
  Refusal *r = g_new0 (Refusal, 1);

  r->address = g_strdup (address);
  r->reply = g_strdup (reply ? reply : "refused");
  r->server = srv ? g_strdup (srv->name) : NULL;
  r->host = srv ? g_strdup (srv->host) : NULL;
  g_ptr_array_add (job->refusals, r);
}

/* Locks and loads entry id; NULL if it is busy, gone, corrupt or (unless
 * flushing) not due. */
static Job *
job_open (RmContext *ctx, const RmRunOptions *run, const char *id,
          RmDeliverStats *stats)
{
  g_autoptr (GError) error = NULL;
  struct stat st;
  RmEntry *entry;
  Job *job;
  int fd;

  fd = rm_queue_lock (ctx->queue, id, &error);
  if (fd < 0)
    {
      if (error != NULL)
        rm_log_warn ("%s: %s", id, error->message);
      else
        stats->busy++;
      return NULL;
    }
  entry = rm_queue_load (ctx->queue, id, &error);
  if (entry == NULL || fstat (fd, &st) < 0)
    {
      g_autoptr (GError) move_error = NULL;

      rm_log_error ("%s: corrupt entry moved to corrupt/: %s", id,
                    error ? error->message : g_strerror (errno));
      if (!rm_queue_move_corrupt (ctx->queue, id, &move_error))
        rm_log_error ("%s: %s", id, move_error->message);
      rm_entry_free (entry);
      close (fd);
      return NULL;
    }
  if (!run->flush && entry->next_attempt > now_seconds ())
    {
      rm_entry_free (entry);
      close (fd);
      return NULL;
    }

  job = g_new0 (Job, 1);
  job->entry = entry;
  job->fd = fd;
  job->size = st.st_size;
  job->tried = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  job->refusals = g_ptr_array_new_with_free_func (refusal_free);
  return job;
}

/* ---- choosing servers ----------------------------------------------------- */

static gboolean
server_usable (RmContext *ctx, const RmRunOptions *run, const Job *job,
               const RmServerConf *srv, gint64 now)
{
  if (g_hash_table_contains (job->tried, srv->name))
    return FALSE;
  return run->flush || rm_state_backoff_until (ctx->state, srv->name) <= now;
}

static RmServerConf *
choose_server (RmContext *ctx, const RmRunOptions *run, Job *job,
               GError **error)
{
  GPtrArray *servers = ctx->config->servers;
  g_autoptr (GPtrArray) usable = g_ptr_array_new ();
  g_autoptr (GPtrArray) names = g_ptr_array_new ();
  g_autofree char *day = NULL;
  gint64 now = now_seconds ();
  RmServerConf *srv;
  guint pick;

  if (!open_state (ctx, error))
    return NULL;
  for (guint i = 0; i < servers->len; i++)
    if (server_usable (ctx, run, job, servers->pdata[i], now))
      {
        g_ptr_array_add (usable, servers->pdata[i]);
        g_ptr_array_add (names, ((RmServerConf *) servers->pdata[i])->name);
      }
  if (usable->len == 0)
    return NULL;
  day = rm_context_today (ctx);
  if (!rm_state_choose (ctx->state, day, names, ctx->selector, ctx->rnd,
                        &pick, error))
    return NULL;
  srv = usable->pdata[pick];
  g_hash_table_add (job->tried, g_strdup (srv->name));
  return srv;
}

/* ---- one session with one server ---------------------------------------- */

void
rm_server_view (const RmConfig *config, const RmServerConf *conf,
                const char *password, RmServer *srv)
{
  memset (srv, 0, sizeof *srv);
  srv->name = conf->name;
  srv->host = conf->host;
  srv->port = conf->port;
  srv->helo = config->hostname;
  srv->connect_timeout = conf->connect_timeout;
  srv->timeout = conf->timeout;
  srv->tls = conf->tls;
  srv->tls_ca_file = conf->tls_ca_file;
  srv->tls_fingerprint = conf->tls_fingerprint;
  srv->tls_verify = conf->tls_verify;
  srv->user = conf->user;
  srv->password = password;
}

static const char *
result_word (RmResultCode code)
{
  switch (code)
    {
    case RM_RESULT_OK:
      return "sent";
    case RM_RESULT_PERMFAIL:
      return "refused";
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
  gint64 delay = now_seconds () - job->entry->created;
  GLogLevelFlags level = code == RM_RESULT_OK ? G_LOG_LEVEL_INFO
                                              : G_LOG_LEVEL_WARNING;

  g_log ("rampmail", level,
         "%s: to=<%s> relay=%s[%s]:%u delay=%" G_GINT64_FORMAT
         " status=%s reply=\"%s\"",
         job->entry->id, to, srv->name, srv->host, srv->port, MAX (delay, 0),
         result_word (code), text);
}

/* "550 5.1.1 text" from a code and the text the transport gave. */
static char *
full_reply (int code, const char *text)
{
  if (code == 0)
    return g_strdup (text ? text : "");
  return g_strdup_printf ("%d %s", code, text ? text : "");
}

/* The outcome of one recipient: its own, or the attempt's if the
 * transport never got to it. *reply is newly allocated. */
static RmResultCode
outcome (const RmRecipient *rcpt, const RmAttempt *attempt, char **reply,
         int *code)
{
  const RmResultCode whole = attempt->result;

  if (rcpt->result != RM_RESULT_PENDING)
    {
      *code = rcpt->smtp_code;
      *reply = full_reply (rcpt->smtp_code, rcpt->reply);
      return rcpt->result;
    }
  *code = attempt->smtp_code;
  *reply = full_reply (attempt->smtp_code, attempt->reply);
  if (whole == RM_RESULT_PENDING || whole == RM_RESULT_OK)
    return RM_RESULT_TEMPFAIL;
  return whole;
}

/* Sorts each recipient of job after a session with srv. Returns TRUE if
 * the server answered at all (some recipient got a reply other than 421
 * or a 2xx/5xx outcome), which tells a working server from a failing one. */
static gboolean
sort_outcomes (Job *job, const RmServerConf *srv, RmRecipient *rcpts,
               guint n, const RmAttempt *attempt, RmDeliverStats *stats)
{
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  gboolean answered = FALSE;

  job->retry_elsewhere = FALSE;
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *reply = NULL;
      int code;
      RmResultCode result = outcome (&rcpts[i], attempt, &reply, &code);

      log_recipient (job, srv, rcpts[i].address, result, reply);
      if (result != RM_RESULT_TEMPFAIL || (code != 0 && code != 421))
        answered = TRUE;
      if (result == RM_RESULT_OK)
        stats->sent++;
      else if (result == RM_RESULT_PERMFAIL)
        add_refusal (job, rcpts[i].address, reply, srv);
      else
        {
          if (result == RM_RESULT_UNKNOWN)
            job->no_failover = TRUE;
          else
            job->retry_elsewhere = TRUE;
          g_free (job->entry->last_error);
          job->entry->last_error = g_strdup_printf (
              "%s: %s", srv->name, *reply ? reply : "failed");
          g_ptr_array_add (keep, g_strdup (rcpts[i].address));
        }
    }
  g_ptr_array_set_size (job->entry->rcpts, 0);
  for (guint i = 0; i < keep->len; i++)
    g_ptr_array_add (job->entry->rcpts, g_strdup (keep->pdata[i]));
  return answered;
}

/* One message of a session, with what its outcome needs. */
typedef struct {
  RmMessage msg;
  RmRecipient *rcpts;
  RmContext *ctx;
  Job *job;
  const RmServerConf *conf;
  RmDeliverStats *stats;
  gboolean sorted;        /* outcome recorded */
  gboolean answered;      /* the server answered for it */
} Outgoing;

static void finish_job (RmContext *ctx, Job *job, RmDeliverStats *stats);

/* Records one message's outcome; an entry with nothing left to try is
 * finished at once (removed from the queue, bounces queued), so that a
 * crash later in the session cannot send it twice. */
static void
outgoing_settle (Outgoing *out, const RmAttempt *attempt)
{
  Job *job = out->job;

  if (out->sorted)
    return;
  out->sorted = TRUE;
  job->attempted = TRUE;
  out->answered = sort_outcomes (job, out->conf, out->rcpts,
                                 (guint) out->msg.n_rcpts, attempt,
                                 out->stats);
  if (job->entry->rcpts->len == 0)
    {
      finish_job (out->ctx, job, out->stats);
      job->finished = TRUE;
    }
}

static void
on_message_done (RmMessage *msg, RmAttempt *attempt, gpointer user_data)
{
  outgoing_settle (user_data, attempt);
}

static void
outgoing_fill (Outgoing *out, Job *job)
{
  guint n = job->entry->rcpts->len;

  out->rcpts = g_new0 (RmRecipient, n);
  for (guint i = 0; i < n; i++)
    out->rcpts[i].address = job->entry->rcpts->pdata[i];
  out->msg.queue_id = job->entry->id;
  out->msg.sender = job->entry->sender;
  out->msg.rcpts = out->rcpts;
  out->msg.n_rcpts = n;
  out->msg.body = job->entry->body;
  out->msg.data_fd = job->fd;
  out->msg.size = job->size;
  out->msg.done = on_message_done;
  out->msg.done_data = out;
  out->job = job;
  lseek (job->fd, 0, SEEK_SET);
}

static void
outgoing_clear (Outgoing *out)
{
  for (size_t i = 0; i < out->msg.n_rcpts; i++)
    g_free (out->rcpts[i].reply);
  g_free (out->rcpts);
}

/* Sends jobs (Job *) over one session with srv and sorts the outcomes. */
static void
send_group (RmContext *ctx, const RmServerConf *conf, GPtrArray *jobs,
            RmDeliverStats *stats)
{
  g_autoptr (GError) error = NULL;
  g_autofree Outgoing *out = g_new0 (Outgoing, jobs->len);
  g_autofree RmMessage **msgs = g_new0 (RmMessage *, jobs->len);
  g_autofree RmAttempt *attempts = g_new0 (RmAttempt, jobs->len);
  const RmTransportOps *ops;
  gboolean answered = FALSE;
  gboolean sent = FALSE;
  char *password = NULL;
  RmServer srv;

  for (guint i = 0; i < jobs->len; i++)
    {
      outgoing_fill (&out[i], jobs->pdata[i]);
      out[i].ctx = ctx;
      out[i].conf = conf;
      out[i].stats = stats;
      msgs[i] = &out[i].msg;
    }
  ops = rm_modules_load (ctx->config->plugin_dir, RM_PLUGIN_TRANSPORT,
                         conf->transport, &error);
  if (ops != NULL && conf->user != NULL)
    password = rm_secret_read (conf, &error);
  if (ops != NULL && (conf->user == NULL || password != NULL))
    {
      rm_server_view (ctx->config, conf, password, &srv);
      sent = ops->send (&srv, msgs, jobs->len, attempts, &error);
    }
  rm_secret_free (password);
  if (!sent && error != NULL)
    rm_log_warn ("server %s: %s", conf->name, error->message);
  for (guint i = 0; i < jobs->len; i++)
    {
      if (!sent)
        {
          attempts[i].result = RM_RESULT_TEMPFAIL;
          if (attempts[i].reply == NULL && error != NULL)
            attempts[i].reply = g_strdup (error->message);
        }
      outgoing_settle (&out[i], &attempts[i]);
      answered |= out[i].answered;
      outgoing_clear (&out[i]);
      g_free (attempts[i].reply);
    }
  g_clear_error (&error);
  if (rm_state_server_result (ctx->state, conf->name, sent && answered,
                              now_seconds (), ctx->config->retry_min,
                              ctx->config->retry_max, &error)
          > 0)
    rm_log_warn ("server %s failed; not tried again before the backoff "
                 "ends", conf->name);
  if (error != NULL)
    rm_log_warn ("%s", error->message);
}

/* ---- rounds ------------------------------------------------------------- */

static gboolean
wants_server (const Job *job)
{
  if (job->entry->rcpts->len == 0 || job->no_failover)
    return FALSE;
  return !job->attempted || job->retry_elsewhere;
}

/* Offers every job that still wants a server to one, in rounds, until no
 * job can go anywhere else. */
static void
deliver_jobs (RmContext *ctx, const RmRunOptions *run, GPtrArray *jobs,
              RmDeliverStats *stats)
{
  GPtrArray *servers = ctx->config->servers;

  for (;;)
    {
      g_autoptr (GHashTable) groups = g_hash_table_new_full (
          g_direct_hash, g_direct_equal, NULL,
          (GDestroyNotify) g_ptr_array_unref);
      guint grouped = 0;

      for (guint i = 0; i < jobs->len; i++)
        {
          g_autoptr (GError) error = NULL;
          Job *job = jobs->pdata[i];
          RmServerConf *srv;
          GPtrArray *group;

          if (!wants_server (job))
            continue;
          job->retry_elsewhere = FALSE;
          srv = choose_server (ctx, run, job, &error);
          if (srv == NULL)
            {
              if (error != NULL)
                rm_log_warn ("%s: no server chosen: %s", job->entry->id,
                             error->message);
              continue;
            }
          group = g_hash_table_lookup (groups, srv);
          if (group == NULL)
            {
              group = g_ptr_array_new ();
              g_hash_table_insert (groups, srv, group);
            }
          g_ptr_array_add (group, job);
          grouped++;
        }
      if (grouped == 0)
        return;
      for (guint i = 0; i < servers->len; i++)
        {
          GPtrArray *group = g_hash_table_lookup (groups, servers->pdata[i]);

          if (group != NULL)
            send_group (ctx, servers->pdata[i], group, stats);
        }
    }
}

/* ---- after the rounds --------------------------------------------------- */

/* Tells the sender about refusals, or keeps them in the failed area when
 * no bounce can be sent. */
static void
report_refusals (RmContext *ctx, Job *job, GPtrArray *refusals,
                 RmBounceReason reason)
{
  g_autofree RmBounceRcpt *rcpts = g_new0 (RmBounceRcpt, refusals->len);
  g_autoptr (GPtrArray) addrs = g_ptr_array_new ();
  g_autoptr (GPtrArray) replies = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *dsn = NULL;

  for (guint i = 0; i < refusals->len; i++)
    {
      Refusal *r = refusals->pdata[i];

      rcpts[i] = (RmBounceRcpt) { r->address, r->reply, r->server, r->host };
      g_ptr_array_add (addrs, r->address);
      g_ptr_array_add (replies, r->reply);
    }
  if (*job->entry->sender != '\0'
      && rm_bounce_queue (ctx->queue, ctx->config, job->entry, job->fd, rcpts,
                          refusals->len, reason, job->entry->attempts + 1,
                          &dsn, &error))
    {
      if (dsn != NULL)
        rm_log_info ("%s: bounce %s queued for <%s> about %u recipients",
                     job->entry->id, dsn, job->entry->sender, refusals->len);
      return;
    }
  if (error != NULL)
    rm_log_error ("%s: cannot queue a bounce: %s", job->entry->id,
                  error->message);
  g_clear_error (&error);
  if (!rm_queue_keep_failed (ctx->queue, job->entry, addrs, replies, &error))
    rm_log_error ("%s: cannot keep the refused recipients: %s",
                  job->entry->id, error->message);
  else
    rm_log_warn ("%s: %u refused recipients kept in failed/",
                 job->entry->id, refusals->len);
}

static void
expire (RmContext *ctx, Job *job, RmDeliverStats *stats)
{
  g_autoptr (GPtrArray) expired = g_ptr_array_new_with_free_func (
      refusal_free);
  RmEntry *entry = job->entry;

  for (guint i = 0; i < entry->rcpts->len; i++)
    {
      Refusal *r = g_new0 (Refusal, 1);

      r->address = g_strdup (entry->rcpts->pdata[i]);
      r->reply = g_strdup (entry->last_error ? entry->last_error
                                             : "not delivered in time");
      g_ptr_array_add (expired, r);
    }
  rm_log_warn ("%s: expired after %" G_GINT64_FORMAT " s in the queue",
               entry->id, now_seconds () - entry->created);
  report_refusals (ctx, job, expired, RM_BOUNCE_EXPIRED);
  stats->failed += entry->rcpts->len;
  g_ptr_array_set_size (entry->rcpts, 0);
}

/* When the first backed-off server may be tried again. */
static gint64
earliest_backoff (RmContext *ctx)
{
  GPtrArray *servers = ctx->config->servers;
  gint64 now = now_seconds ();
  gint64 first = now + ctx->config->retry_min;

  if (ctx->state == NULL)
    return first;
  for (guint i = 0; i < servers->len; i++)
    {
      RmServerConf *srv = servers->pdata[i];
      gint64 until = rm_state_backoff_until (ctx->state, srv->name);

      if (until > now && until < first)
        first = until;
    }
  return first;
}

static void
finish_job (RmContext *ctx, Job *job, RmDeliverStats *stats)
{
  g_autoptr (GError) error = NULL;
  RmEntry *entry = job->entry;
  gint64 now = now_seconds ();
  gboolean ok;

  if (job->refusals->len > 0)
    report_refusals (ctx, job, job->refusals, RM_BOUNCE_FAILED);
  stats->failed += job->refusals->len;
  if (entry->rcpts->len > 0
      && now - entry->created >= (gint64) ctx->config->queue_lifetime)
    expire (ctx, job, stats);

  if (entry->rcpts->len == 0)
    {
      rm_log_info ("%s: removed", entry->id);
      ok = rm_queue_remove (ctx->queue, entry->id, &error);
    }
  else if (job->attempted)
    {
      stats->deferred += entry->rcpts->len;
      entry->attempts++;
      entry->last_attempt = now;
      entry->next_attempt = now + rm_state_retry_delay (
                                      entry->attempts,
                                      ctx->config->retry_min,
                                      ctx->config->retry_max);
      ok = rm_queue_update (ctx->queue, entry, &error);
    }
  else
    {
      /* No server could take it now: wait for the first backoff to end. */
      stats->deferred += entry->rcpts->len;
      entry->next_attempt = MAX (earliest_backoff (ctx), now + 1);
      ok = rm_queue_update (ctx->queue, entry, &error);
    }
  if (job->attempted)
    stats->attempted++;
  if (!ok)
    rm_log_error ("%s: %s", entry->id, error->message);
}

gboolean
rm_deliver_run (RmContext *ctx, const RmRunOptions *run,
                RmDeliverStats *stats, GError **error)
{
  g_autoptr (GPtrArray) ids = rm_queue_list (ctx->queue, error);
  guint next = 0;

  if (ids == NULL)
    return FALSE;
  while (next < ids->len)
    {
      g_autoptr (GPtrArray) jobs = g_ptr_array_new_with_free_func (job_free);

      for (; next < ids->len && jobs->len < BATCH_ENTRIES; next++)
        {
          const char *id = ids->pdata[next];
          Job *job;

          if (run->only_id != NULL && strcmp (run->only_id, id) != 0)
            continue;
          job = job_open (ctx, run, id, stats);
          if (job != NULL)
            g_ptr_array_add (jobs, job);
        }
      deliver_jobs (ctx, run, jobs, stats);
      for (guint i = 0; i < jobs->len; i++)
        {
          Job *job = jobs->pdata[i];

          if (!job->finished)
            finish_job (ctx, job, stats);
        }
    }
  return TRUE;
}
