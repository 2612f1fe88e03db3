/* Delivery runs; see deliver.h. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bounce.h"
#include "deliver.h"
#include "errors.h"
#include "log.h"
#include "mime.h"
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
  ctx->warmups = g_new0 (const RmWarmupOps *, config->servers->len);
  for (guint i = 0; i < config->servers->len; i++)
    {
      RmServerConf *srv = config->servers->pdata[i];

      if (strcmp (srv->ramp.warmup, "none") == 0)
        continue;
      ctx->warmups[i] = rm_modules_load (config->plugin_dir, RM_PLUGIN_WARMUP,
                                         srv->ramp.warmup, error);
      if (ctx->warmups[i] == NULL)
        {
          g_prefix_error (error, "[server %s] warmup: ", srv->name);
          return FALSE;
        }
    }
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
  g_clear_pointer (&ctx->warmups, g_free);
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
  int fd; /* the entry's lock, and its data */
  gint64 size;
  GHashTable *tried;        /* servers that failed it in this run */
  GPtrArray *refusals;      /* Refusal *: refused for good in this run */
  gboolean attempted;       /* offered to a server in this run */
  gboolean retry_elsewhere; /* a recipient failed temporarily last round */
  gboolean no_failover;     /* outcome unknown: wait for a later run */
  gboolean failed_now;      /* a temporary failure in this run */
  gboolean waiting;         /* some recipients wait for an allowance */
  gint64 next_window;       /* when the first server may take them */
  gboolean finished;        /* recorded and unlocked; nothing left to do */
  gboolean removing;        /* envelope removed; see finish_removals */
  GHashTable *refused_by;   /* servers that refused the whole message for
                             * good in this run (a 5xx to MAIL or DATA) */
  gboolean downgrade;       /* a server lacked 8BITMIME: offer a 7-bit copy */
  char *refusal;            /* the last such reply, and its server */
  const RmServerConf *refusal_server;
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
  g_hash_table_unref (job->refused_by);
  g_ptr_array_unref (job->refusals);
  g_free (job->refusal);
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
  if (fd < 0 && error == NULL && rm_queue_data_missing (ctx->queue, id))
    g_set_error_literal (&error, RM_ERROR, RM_ERROR_DATA,
                         "its data file is missing");
  else if (fd < 0)
    {
      if (error != NULL)
        rm_log_warn ("%s: %s", id, error->message);
      else
        stats->busy++;
      return NULL;
    }
  if (error == NULL)
    entry = rm_queue_load (ctx->queue, id, &error);
  else
    entry = NULL;
  if (entry == NULL || fstat (fd, &st) < 0)
    {
      g_autoptr (GError) move_error = NULL;

      rm_log_error ("%s: corrupt entry moved to corrupt/: %s", id,
                    error ? error->message : g_strerror (errno));
      if (!rm_queue_move_corrupt (ctx->queue, id, &move_error))
        rm_log_error ("%s: %s", id, move_error->message);
      rm_entry_free (entry);
      if (fd >= 0)
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
  job->refused_by = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                           NULL);
  job->refusals = g_ptr_array_new_with_free_func (refusal_free);
  job->next_window = G_MAXINT64;
  return job;
}

/* ---- choosing servers ----------------------------------------------------- */

void
rm_context_quota_spec (const RmContext *ctx, guint i, RmQuotaSpec *spec)
{
  RmServerConf *conf = ctx->config->servers->pdata[i];
  const RmRampConf *ramp = &conf->ramp;

  memset (spec, 0, sizeof *spec);
  spec->server = conf->name;
  spec->warmup = ctx->warmups[i];
  if (ramp->schedule != NULL)
    {
      spec->params.schedule = (const guint *) ramp->schedule->data;
      spec->params.schedule_len = ramp->schedule->len;
    }
  spec->params.start = ramp->start;
  spec->params.growth = ramp->growth;
  spec->params.cap = ramp->cap;
  spec->params.min_share = ramp->min_share;
  spec->params.restart_after = ramp->restart_after;
  spec->min_gap = ramp->min_gap;
  spec->hourly_share = ramp->hourly_share;
  spec->max_rcpts = conf->max_rcpts;
}

static gboolean
domain_listed (char **domains, const char *domain)
{
  if (domain == NULL)
    return FALSE;
  for (gsize i = 0; domains[i] != NULL; i++)
    if (g_ascii_strcasecmp (domain, domains[i]) == 0
        || (g_str_has_suffix (domain, domains[i])
            && strlen (domain) > strlen (domains[i])
            && domain[strlen (domain) - strlen (domains[i]) - 1] == '.'))
      return TRUE;
  return FALSE;
}

/* May server carry this entry at all? Its sender_domains must hold the
 * domains of both the envelope sender and the From address (SPF checks
 * the one, DMARC the other); a DKIM-signed message never goes through a
 * server that rewrites From. */
static gboolean
server_may_carry (const RmServerConf *srv, const RmEntry *entry)
{
  const char *at = strrchr (entry->sender, '@');

  if (entry->dkim && srv->from == RM_FROM_ACCOUNT)
    return FALSE;
  if (srv->sender_domains == NULL)
    return TRUE;
  if (*entry->sender != '\0'
      && !domain_listed (srv->sender_domains, at ? at + 1 : NULL))
    return FALSE;
  return domain_listed (srv->sender_domains, entry->from_domain);
}

/* May server i take (part of) job now? Caps are checked later, inside the
 * reservation's transaction. */
static gboolean
server_usable (RmContext *ctx, const RmRunOptions *run, const Job *job,
               guint i, gint64 now)
{
  RmServerConf *srv = ctx->config->servers->pdata[i];

  if (g_hash_table_contains (job->tried, srv->name))
    return FALSE;
  if (!server_may_carry (srv, job->entry))
    return FALSE;
  if (rm_state_backoff_until (ctx->state, srv->name) <= now)
    return TRUE;
  /* A flush skips the backoff of a failing server, not a hold (a refused
   * login, a provider's daily limit): those would only fail again. */
  if (run->flush)
    {
      g_autofree char *held = rm_state_backoff_reason (ctx->state, srv->name);
      return held == NULL;
    }
  return FALSE;
}

/* Why no server of the configuration may carry job, or NULL if one may. */
static char *
policy_blocked (RmContext *ctx, const Job *job)
{
  GPtrArray *servers = ctx->config->servers;

  for (guint i = 0; i < servers->len; i++)
    if (server_may_carry (servers->pdata[i], job->entry))
      return NULL;
  if (job->entry->dkim)
    return g_strdup ("DKIM-signed, and every server that may carry it "
                     "sends as its account (from = account), which would "
                     "break the signature: it waits for a server with "
                     "from = keep");
  return g_strdup_printf ("no server may carry mail from %s "
                          "(sender_domains): it waits for one that may",
                          job->entry->from_domain ? job->entry->from_domain
                                                  : job->entry->sender);
}

/* A share of one job's recipients for one server in one round. */
typedef struct {
  Job *job;
  RmServerConf *conf;
  GPtrArray *rcpts; /* char *, borrowed from the entry */
  guint granted;    /* how many recipients it may take */
  gint64 reservation;
} Part;

static void
part_free (gpointer data)
{
  Part *part = data;

  g_ptr_array_unref (part->rcpts);
  g_free (part);
}

/* Reserves a server for up to want recipients of job. NULL when no
 * server can take any now (job->waiting tells if an allowance is why). */
static Part *
reserve_part (RmContext *ctx, const RmRunOptions *run, Job *job, guint want,
              GError **error)
{
  GPtrArray *servers = ctx->config->servers;
  g_autofree RmQuotaSpec *specs = g_new0 (RmQuotaSpec, servers->len);
  g_autofree guint *index = g_new0 (guint, servers->len);
  gint64 now = now_seconds ();
  gint64 window = G_MAXINT64;
  guint n = 0, chosen = 0, granted = 0;
  gint64 reservation = 0;
  Part *part;

  for (guint i = 0; i < servers->len; i++)
    if (server_usable (ctx, run, job, i, now))
      {
        rm_context_quota_spec (ctx, i, &specs[n]);
        index[n++] = i;
      }
  if (n == 0)
    return NULL;
  if (!rm_state_reserve (ctx->state, specs, n, ctx->selector, ctx->rnd, now,
                         ctx->tz, want, &chosen, &granted, &reservation,
                         &window, error))
    return NULL;
  if (granted == 0)
    {
      job->waiting = TRUE;
      job->next_window = MIN (job->next_window, window);
      return NULL;
    }
  part = g_new0 (Part, 1);
  part->job = job;
  part->conf = servers->pdata[index[chosen]];
  part->rcpts = g_ptr_array_new ();
  part->granted = granted;
  part->reservation = reservation;
  return part;
}

/* Splits job's recipients over servers with room for them; adds the parts
 * to groups (server -> parts). */
static void
assign_job (RmContext *ctx, const RmRunOptions *run, Job *job,
            GHashTable *groups)
{
  GPtrArray *rcpts = job->entry->rcpts;
  guint next = 0;

  while (next < rcpts->len)
    {
      g_autoptr (GError) error = NULL;
      Part *part = reserve_part (ctx, run, job, rcpts->len - next, &error);
      GPtrArray *group;
      guint granted;

      if (part == NULL)
        {
          if (error != NULL)
            rm_log_warn ("%s: no server chosen: %s", job->entry->id,
                         error->message);
          return;
        }
      granted = MIN (rcpts->len - next, part->granted);
      for (guint k = 0; k < granted; k++)
        g_ptr_array_add (part->rcpts, rcpts->pdata[next + k]);
      next += granted;
      group = g_hash_table_lookup (groups, part->conf);
      if (group == NULL)
        {
          group = g_ptr_array_new_with_free_func (part_free);
          g_hash_table_insert (groups, part->conf, group);
        }
      g_ptr_array_add (group, part);
    }
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
  if (code == 0 || (text != NULL && atoi (text) == code))
    return g_strdup (text ? text : "");
  return g_strdup_printf ("%d %s", code, text ? text : "");
}

/* What a reply says about the server rather than the recipient. */
typedef enum {
  VERDICT_NONE = 0,
  VERDICT_LOGIN,     /* 535 5.7.8, 534 5.7.9, 530 5.7.0: fix the login */
  VERDICT_EXHAUSTED, /* 550 5.4.5: the provider's daily limit */
  VERDICT_THROTTLED, /* 421 or 454 4.7.0: too fast, too many logins */
} ServerVerdict;

static ServerVerdict
server_verdict (int code, const char *reply)
{
  if (code == 535 || code == 534 || code == 530)
    return VERDICT_LOGIN;
  if (code == 550 && reply != NULL && strstr (reply, "5.4.5") != NULL)
    return VERDICT_EXHAUSTED;
  if (code == 421 || (code == 454 && reply && strstr (reply, "4.7.0")))
    return VERDICT_THROTTLED;
  return VERDICT_NONE;
}

/* The outcome of one recipient: its own, or the attempt's if the
 * transport never got to it. *reply is newly allocated. */
static RmResultCode
outcome (const RmRecipient *rcpt, const RmAttempt *attempt, char **reply,
         int *code, gboolean *whole_message)
{
  const RmResultCode whole = attempt->result;

  *whole_message = rcpt->result == RM_RESULT_PENDING;
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

static void
drop_recipient (RmEntry *entry, const char *address)
{
  for (guint i = 0; i < entry->rcpts->len; i++)
    if (strcmp (entry->rcpts->pdata[i], address) == 0)
      {
        g_ptr_array_remove_index (entry->rcpts, i);
        return;
      }
}

/* What one session told about its server. */
typedef struct {
  gboolean answered; /* some recipient got a real answer */
  ServerVerdict verdict;
  char *verdict_reply;
} SessionNews;

/* One recipient's outcome, to log. */
typedef struct {
  RmResultCode result;
  char *address;
  char *reply;
} LogLine;

static void
log_line_clear (gpointer data)
{
  LogLine *line = data;

  g_free (line->address);
  g_free (line->reply);
}

/* One message of a session: a part, with what its outcome needs. */
typedef struct {
  RmMessage msg;
  RmRecipient *rcpts;
  RmContext *ctx;
  Part *part;
  RmDeliverStats *stats;
  SessionNews *news;
  GArray *settles;  /* RmSettle: recorded once the session is over */
  char *sender;     /* envelope sender for this server */
  int rewritten_fd; /* From rewritten for the account, or -1 */
  int seven_bit_fd; /* the 7-bit copy (RFC 6152), or -1 */
  gboolean sorted;
  GArray *log; /* LogLine: logged once the queue has recorded
                           * the outcome */
} Outgoing;

static void finish_job (RmContext *ctx, Job *job, RmDeliverStats *stats);
static void finish_removals (RmContext *ctx, Job *const *jobs, guint n);

/* Sorts each recipient of a part after its message is done. Returns the
 * recipients that count against the server's allowance. */
static guint
sort_outcomes (Outgoing *out, const RmAttempt *attempt)
{
  Job *job = out->part->job;
  const RmServerConf *srv = out->part->conf;
  guint used = 0;
  /* The server lacks 8BITMIME: the same server gets a 7-bit copy in the
   * next round (never for a DKIM-signed message, whose body would change
   * under its signature). */
  gboolean seven_bit_next = out->msg.needs_7bit && !job->downgrade
                            && !job->entry->dkim;

  if (out->msg.needs_7bit)
    out->news->answered = TRUE; /* it answered EHLO: not a failing server */
  if (seven_bit_next)
    job->downgrade = TRUE;

  for (size_t i = 0; i < out->msg.n_rcpts; i++)
    {
      g_autofree char *reply = NULL;
      int code;
      gboolean whole_message;
      RmResultCode result = outcome (&out->rcpts[i], attempt, &reply, &code,
                                     &whole_message);
      ServerVerdict verdict = server_verdict (code, reply);
      const char *address = out->rcpts[i].address;

      if (verdict != VERDICT_NONE)
        {
          /* The server's fault, not the recipient's: never a bounce. */
          result = RM_RESULT_TEMPFAIL;
          out->news->verdict = verdict;
          g_free (out->news->verdict_reply);
          out->news->verdict_reply = g_strdup (reply);
        }
      else if (result != RM_RESULT_TEMPFAIL || (code != 0 && code != 421))
        out->news->answered = TRUE;
      if (result == RM_RESULT_PERMFAIL && whole_message)
        {
          /* This server will not take this message (its sender, its
           * content): another server may. A bounce only when every server
           * has said so (finish_job). */
          result = RM_RESULT_TEMPFAIL;
          g_hash_table_add (job->refused_by, g_strdup (srv->name));
          g_free (job->refusal);
          job->refusal = g_strdup (reply);
          job->refusal_server = srv;
        }
      g_array_append_val (out->log, ((LogLine){ result, g_strdup (address),
                                                g_strdup (reply) }));
      if (result == RM_RESULT_OK || result == RM_RESULT_UNKNOWN)
        used++;
      if (result == RM_RESULT_OK)
        {
          out->stats->sent++;
          drop_recipient (job->entry, address);
        }
      else if (result == RM_RESULT_PERMFAIL)
        {
          add_refusal (job, address, reply, srv);
          drop_recipient (job->entry, address);
        }
      else
        {
          if (result == RM_RESULT_UNKNOWN)
            job->no_failover = TRUE;
          else if (seven_bit_next)
            job->retry_elsewhere = TRUE;
          else
            job->retry_elsewhere = job->failed_now = TRUE;
          /* Not this server again for this entry in this run (but for its
           * 7-bit copy). */
          if (!seven_bit_next)
            g_hash_table_add (job->tried, g_strdup (srv->name));
          g_free (job->entry->last_error);
          job->entry->last_error = g_strdup_printf (
              "%s: %s", srv->name, *reply ? reply : "failed");
        }
    }
  return used;
}

/* Some recipients of job are done, others not: the envelope loses the
 * delivered ones at once, so that a killed process does not send them
 * again later in the run or in the next one. Refused recipients stay in
 * it until finish_job has queued their bounce. */
static void
forget_delivered (RmContext *ctx, Job *job)
{
  g_autoptr (GError) error = NULL;
  RmEntry *entry = job->entry;
  guint n = entry->rcpts->len;

  for (guint i = 0; i < job->refusals->len; i++)
    g_ptr_array_add (
        entry->rcpts,
        g_strdup (((Refusal *) job->refusals->pdata[i])->address));
  if (!rm_queue_update (ctx->queue, entry, &error))
    rm_log_error ("%s: %s", entry->id, error->message);
  g_ptr_array_set_size (entry->rcpts, n);
}

/* Records one message's outcome at once: an entry with nothing left to
 * try is finished (its envelope removed, bounces queued), so that a
 * killed process cannot send it twice. The allowance it used is recorded
 * with the session's others when the session is over (until then its
 * whole reservation counts, and a killed process's counts as used). */
static void
outgoing_settle (Outgoing *out, const RmAttempt *attempt)
{
  Job *job = out->part->job;
  RmSettle settle = { out->part->reservation, 0, 0 };
  guint before = job->entry->rcpts->len;

  if (out->sorted)
    return;
  out->sorted = TRUE;
  job->attempted = TRUE;
  out->log = g_array_new (FALSE, FALSE, sizeof (LogLine));
  g_array_set_clear_func (out->log, log_line_clear);
  settle.used = sort_outcomes (out, attempt);
  settle.ts = now_seconds ();
  /* The queue first: the shorter the time between the server's reply and
   * this record, the smaller the window for a duplicate after a crash. */
  if (job->entry->rcpts->len == 0)
    {
      finish_job (out->ctx, job, out->stats);
      job->finished = TRUE;
    }
  else if (job->entry->rcpts->len < before)
    forget_delivered (out->ctx, job);
  for (guint i = 0; i < out->log->len; i++)
    {
      LogLine *line = &g_array_index (out->log, LogLine, i);

      log_recipient (job, out->part->conf, line->address, line->result,
                     line->reply);
    }
  g_clear_pointer (&out->log, g_array_unref);
  g_array_append_val (out->settles, settle);
}

static void
on_message_done (RmMessage *msg, RmAttempt *attempt, gpointer user_data)
{
  outgoing_settle (user_data, attempt);
}

/* The data is about to go out: from now on a crash counts the
 * reservation as used (the outcome would be unknown). */
static void
on_message_started (RmMessage *msg, gpointer user_data)
{
  Outgoing *out = user_data;

  rm_state_mark_sending (out->ctx->state, out->part->reservation);
}

static void
outgoing_fill (Outgoing *out, RmContext *ctx, Part *part)
{
  Job *job = part->job;
  guint n = part->rcpts->len;

  out->ctx = ctx;
  out->part = part;
  out->rewritten_fd = -1;
  out->seven_bit_fd = -1;
  out->rcpts = g_new0 (RmRecipient, n);
  for (guint i = 0; i < n; i++)
    out->rcpts[i].address = part->rcpts->pdata[i];
  out->sender = g_strdup (job->entry->sender);
  out->msg.data_fd = job->fd;
  out->msg.body = job->entry->body;
  out->msg.size = job->size;
  if (job->downgrade && job->entry->body == RM_BODY_8BITMIME)
    {
      g_autoptr (GError) error = NULL;
      struct stat st;

      out->seven_bit_fd = rm_mime_downgrade (job->fd, &error);
      out->msg.data_fd = out->seven_bit_fd;
      if (out->seven_bit_fd < 0)
        rm_log_warn ("%s: %s", job->entry->id, error->message);
      else
        {
          out->msg.body = RM_BODY_7BIT;
          if (fstat (out->seven_bit_fd, &st) == 0)
            out->msg.size = st.st_size;
        }
    }
  if (out->msg.data_fd >= 0 && part->conf->from == RM_FROM_ACCOUNT
      && *job->entry->sender != '\0')
    {
      g_autoptr (GError) error = NULL;

      g_free (out->sender);
      out->sender = g_strdup (part->conf->user);
      out->rewritten_fd = rm_mime_rewrite_from (out->msg.data_fd,
                                                part->conf->user, &error);
      if (out->rewritten_fd >= 0)
        out->msg.data_fd = out->rewritten_fd;
      else
        {
          /* Never send as the account with the old From: wait. */
          rm_log_warn ("%s: %s", job->entry->id, error->message);
          out->msg.data_fd = -1;
        }
    }
  out->msg.queue_id = job->entry->id;
  out->msg.sender = out->sender;
  out->msg.rcpts = out->rcpts;
  out->msg.n_rcpts = n;
  out->msg.done = on_message_done;
  out->msg.started = on_message_started;
  out->msg.done_data = out;
  if (out->msg.data_fd >= 0)
    lseek (out->msg.data_fd, 0, SEEK_SET);
}

static void
outgoing_clear (Outgoing *out)
{
  for (size_t i = 0; i < out->msg.n_rcpts; i++)
    g_free (out->rcpts[i].reply);
  g_free (out->rcpts);
  g_free (out->sender);
  if (out->rewritten_fd >= 0)
    close (out->rewritten_fd);
  if (out->seven_bit_fd >= 0)
    close (out->seven_bit_fd);
}

/* Acts on what a session said about its server. */
static void
judge_server (RmContext *ctx, const RmServerConf *conf, gboolean sent,
              SessionNews *news)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *reason = NULL;
  gint64 now = now_seconds ();
  gint64 delay;

  switch (news->verdict)
    {
    case VERDICT_LOGIN:
      if (news->verdict_reply != NULL
          && g_str_has_prefix (news->verdict_reply, "530"))
        reason = g_strdup_printf ("the server wants a login or TLS first "
                                  "(%s): check tls, user and the password",
                                  news->verdict_reply);
      else
        reason = g_strdup_printf ("login refused (%s): check user and the "
                                  "password; Gmail needs an app password",
                                  news->verdict_reply);
      rm_state_server_hold (ctx->state, conf->name,
                            now + ctx->config->retry_max * 6, reason, &error);
      rm_log_error ("server %s: %s", conf->name, reason);
      return;
    case VERDICT_EXHAUSTED:
      reason = g_strdup_printf ("daily sending limit reached (%s)",
                                news->verdict_reply);
      rm_state_server_hold (ctx->state, conf->name,
                            rm_state_next_midnight (now, ctx->tz), reason,
                            &error);
      rm_log_warn ("server %s: %s; held until the next day", conf->name,
                   reason);
      return;
    case VERDICT_THROTTLED:
      news->answered = FALSE;
      break;
    case VERDICT_NONE:
      break;
    }
  delay = rm_state_server_result (
      ctx->state, conf->name, sent && news->answered, now,
      ctx->config->retry_min, ctx->config->retry_max, &error);
  /* -q and -qIID do not wait for a backoff (queue.md). */
  if (delay > 0)
    rm_log_warn ("server %s failed; automatic queue runs leave it alone "
                 "for %" G_GINT64_FORMAT " s",
                 conf->name, delay);
  if (error != NULL)
    rm_log_warn ("%s", error->message);
}

/* Sends parts (Part *) over one session with conf. */
static void
send_group (RmContext *ctx, const RmServerConf *conf, GPtrArray *parts,
            RmDeliverStats *stats)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) settle_error = NULL;
  g_autofree Outgoing *out = g_new0 (Outgoing, parts->len);
  g_autofree RmMessage **msgs = g_new0 (RmMessage *, parts->len);
  g_autofree RmAttempt *attempts = g_new0 (RmAttempt, parts->len);
  SessionNews news = { FALSE, VERDICT_NONE, NULL };
  g_autoptr (GArray) settles = g_array_sized_new (
      FALSE, FALSE, sizeof (RmSettle), parts->len);
  g_autofree Job **jobs = g_new0 (Job *, parts->len);
  const RmTransportOps *ops;
  gboolean sent = FALSE;
  char *password = NULL;
  guint n = 0;
  RmServer srv;

  for (guint i = 0; i < parts->len; i++)
    {
      Part *part = parts->pdata[i];

      outgoing_fill (&out[i], ctx, part);
      out[i].stats = stats;
      out[i].news = &news;
      out[i].settles = settles;
      jobs[i] = part->job;
      if (out[i].msg.data_fd < 0)
        {
          RmAttempt failed = { RM_RESULT_TEMPFAIL, 0,
                               (char *) "the message could not be prepared "
                                        "for this server" };
          outgoing_settle (&out[i], &failed);
          continue;
        }
      msgs[n++] = &out[i].msg;
    }
  ops = rm_modules_load (ctx->config->plugin_dir, RM_PLUGIN_TRANSPORT,
                         conf->transport, &error);
  if (ops != NULL && conf->user != NULL)
    password = rm_secret_read (conf, &error);
  if (ops != NULL && (conf->user == NULL || password != NULL))
    {
      rm_server_view (ctx->config, conf, password, &srv);
      sent = n == 0 || ops->send (&srv, msgs, n, attempts, &error);
    }
  rm_secret_free (password);
  if (!sent && error != NULL)
    rm_log_warn ("server %s: %s", conf->name, error->message);
  for (guint i = 0, k = 0; i < parts->len; i++)
    {
      if (out[i].msg.data_fd >= 0)
        {
          if (!sent)
            {
              attempts[k].result = RM_RESULT_TEMPFAIL;
              if (attempts[k].reply == NULL && error != NULL)
                attempts[k].reply = g_strdup (error->message);
            }
          outgoing_settle (&out[i], &attempts[k]);
          g_free (attempts[k].reply);
          k++;
        }
      outgoing_clear (&out[i]);
    }
  if (!rm_state_settle (ctx->state, (const RmSettle *) settles->data,
                        settles->len, ctx->tz, &settle_error))
    rm_log_error ("server %s: %s", conf->name, settle_error->message);
  finish_removals (ctx, jobs, parts->len);
  if (n > 0)
    judge_server (ctx, conf, sent, &news);
  g_free (news.verdict_reply);
}

/* ---- rounds ------------------------------------------------------------- */

static gboolean
wants_server (const Job *job)
{
  if (job->finished || job->entry->rcpts->len == 0 || job->no_failover)
    return FALSE;
  return !job->attempted || job->retry_elsewhere;
}

/* Offers every job that still wants a server to servers with room, in
 * rounds, until no job can go anywhere else. */
static void
deliver_jobs (RmContext *ctx, const RmRunOptions *run, GPtrArray *jobs,
              RmDeliverStats *stats)
{
  GPtrArray *servers = ctx->config->servers;
  g_autoptr (GError) error = NULL;

  if (!open_state (ctx, &error))
    {
      rm_log_error ("%s", error->message);
      return;
    }
  for (;;)
    {
      g_autoptr (GHashTable) groups = g_hash_table_new_full (
          g_direct_hash, g_direct_equal, NULL,
          (GDestroyNotify) g_ptr_array_unref);
      guint wanting = 0;

      for (guint i = 0; i < jobs->len; i++)
        wanting += wants_server (jobs->pdata[i]);
      if (wanting == 0)
        return;
      rm_state_batch_begin (ctx->state);
      for (guint i = 0; i < jobs->len; i++)
        {
          Job *job = jobs->pdata[i];

          if (!wants_server (job))
            continue;
          job->retry_elsewhere = FALSE;
          assign_job (ctx, run, job, groups);
        }
      if (!rm_state_batch_end (ctx->state, &error))
        {
          /* Nothing is reserved: send nothing; the entries stay queued. */
          rm_log_error ("%s", error->message);
          return;
        }
      if (g_hash_table_size (groups) == 0)
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

      rcpts[i] = (RmBounceRcpt){ r->address, r->reply, r->server, r->host };
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
    rm_log_warn ("%s: %u refused recipients kept in failed/", job->entry->id,
                 refusals->len);
}

/* Keeps the time spent waiting for an allowance, which does not count
 * towards expiry. */
static void
account_waiting (RmEntry *entry, gboolean waiting, gint64 now)
{
  if (waiting && entry->waiting_since == 0)
    entry->waiting_since = now;
  if (!waiting && entry->waiting_since != 0)
    {
      entry->waited += now - entry->waiting_since;
      entry->waiting_since = 0;
    }
}

/* How long the entry has been failing: its age less the waiting. */
static gint64
failing_time (const RmEntry *entry, gint64 now)
{
  return now - entry->created - entry->waited
         - (entry->waiting_since ? now - entry->waiting_since : 0);
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
  rm_log_warn ("%s: expired after failing for %" G_GINT64_FORMAT " s",
               entry->id, failing_time (entry, now_seconds ()));
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

/* Sets when the entry is tried next. */
static void
schedule (RmContext *ctx, Job *job, gint64 now)
{
  RmEntry *entry = job->entry;

  g_autofree char *blocked = policy_blocked (ctx, job);

  if (blocked != NULL)
    {
      entry->next_attempt = now + ctx->config->retry_max;
      g_free (entry->last_error);
      entry->last_error = g_steal_pointer (&blocked);
    }
  else if (job->failed_now || job->no_failover)
    {
      entry->attempts++;
      entry->next_attempt = now
                            + rm_state_retry_delay (entry->attempts,
                                                    ctx->config->retry_min,
                                                    ctx->config->retry_max);
    }
  else if (job->waiting)
    {
      g_autoptr (GDateTime) utc = NULL;
      g_autoptr (GDateTime) local = NULL;
      g_autofree char *when = NULL;

      entry->next_attempt = MAX (job->next_window, now + 1);
      utc = g_date_time_new_from_unix_utc (entry->next_attempt);
      local = g_date_time_to_timezone (utc, ctx->tz);
      when = g_date_time_format (local, "%Y-%m-%d %H:%M");
      g_free (entry->last_error);
      entry->last_error = g_strdup_printf ("all servers are at their "
                                           "allowance; next window at %s",
                                           when);
    }
  else
    entry->next_attempt = MAX (earliest_backoff (ctx), now + 1);
  if (job->attempted)
    entry->last_attempt = now;
}

/* Has every server that may carry job refused the whole message for good
 * in this run? */
static gboolean
refused_everywhere (RmContext *ctx, const Job *job)
{
  GPtrArray *servers = ctx->config->servers;

  if (job->refusal == NULL || job->entry->rcpts->len == 0)
    return FALSE;
  for (guint i = 0; i < servers->len; i++)
    {
      const RmServerConf *srv = servers->pdata[i];

      if (server_may_carry (srv, job->entry)
          && !g_hash_table_contains (job->refused_by, srv->name))
        return FALSE;
    }
  return TRUE;
}

static void
finish_job (RmContext *ctx, Job *job, RmDeliverStats *stats)
{
  g_autoptr (GError) error = NULL;
  RmEntry *entry = job->entry;
  gint64 now = now_seconds ();
  gboolean ok;
  gint64 was_waiting = entry->waiting_since;

  if (refused_everywhere (ctx, job))
    while (entry->rcpts->len > 0)
      {
        add_refusal (job, entry->rcpts->pdata[0], job->refusal,
                     job->refusal_server);
        g_ptr_array_remove_index (entry->rcpts, 0);
      }
  if (job->refusals->len > 0)
    report_refusals (ctx, job, job->refusals, RM_BOUNCE_FAILED);
  stats->failed += job->refusals->len;
  account_waiting (
      entry, job->waiting && !job->failed_now && !job->no_failover, now);
  if (entry->rcpts->len > 0
      && failing_time (entry, now) >= (gint64) ctx->config->queue_lifetime)
    expire (ctx, job, stats);

  if (job->attempted)
    stats->attempted++;
  if (entry->rcpts->len == 0)
    job->removing = ok = rm_queue_remove_env (ctx->queue, entry->id, &error);
  else
    {
      gint64 was_next = entry->next_attempt;
      g_autofree char *was_error = g_strdup (entry->last_error);

      stats->deferred += entry->rcpts->len;
      schedule (ctx, job, now);
      /* An entry that only waits on, as before, need not be rewritten. */
      if (!job->attempted && entry->next_attempt == was_next
          && g_strcmp0 (entry->last_error, was_error) == 0
          && entry->waiting_since == was_waiting)
        ok = TRUE;
      else
        ok = rm_queue_update (ctx->queue, entry, &error);
    }
  if (!ok)
    rm_log_error ("%s: %s", entry->id, error->message);
}

/* Completes the removals finish_job began for jobs: one sync of env/ for
 * them all, then their data. Until the sync, a power loss (not a killed
 * process) could bring an envelope back, and its message would be sent
 * again; the data stays until then, so such an entry is whole. */
static void
finish_removals (RmContext *ctx, Job *const *jobs, guint n)
{
  g_autoptr (GError) error = NULL;
  gboolean any = FALSE;

  for (guint i = 0; i < n && !any; i++)
    any = jobs[i]->removing;
  if (!any)
    return;
  if (!rm_queue_sync_removals (ctx->queue, &error))
    {
      /* The data stays: the next queue run clears it as an orphan. */
      rm_log_error ("%s", error->message);
      for (guint i = 0; i < n; i++)
        jobs[i]->removing = FALSE;
      return;
    }
  for (guint i = 0; i < n; i++)
    {
      Job *job = jobs[i];

      if (!job->removing)
        continue;
      job->removing = FALSE;
      if (rm_queue_remove_data (ctx->queue, job->entry->id, &error))
        rm_log_info ("%s: removed", job->entry->id);
      else
        {
          rm_log_error ("%s: %s", job->entry->id, error->message);
          g_clear_error (&error);
        }
    }
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
      finish_removals (ctx, (Job *const *) jobs->pdata, jobs->len);
    }
  return TRUE;
}
