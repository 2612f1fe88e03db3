/* rampmail --status: what each server may send, why each message waits,
 * and when the queue will be empty at today's pace. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <glib/gstdio.h>

#include "errors.h"
#include "log.h"
#include "status.h"

/* Days the projection looks ahead before it gives up. */
#define HORIZON_DAYS 366

static gint64
now_seconds (void)
{
  return g_get_real_time () / G_USEC_PER_SEC;
}

static char *
stamp (gint64 ts, GTimeZone *tz)
{
  g_autoptr (GDateTime) utc = NULL;
  g_autoptr (GDateTime) local = NULL;

  if (ts <= 0)
    return g_strdup ("never");
  utc = g_date_time_new_from_unix_utc (ts);
  local = g_date_time_to_timezone (utc, tz);
  return g_date_time_format (local, "%Y-%m-%d %H:%M");
}

static void
print_server (RmContext *ctx, guint i, gint64 now)
{
  RmServerConf *conf = ctx->config->servers->pdata[i];
  g_autoptr (GError) error = NULL;
  g_autofree char *last = NULL;
  g_autofree char *held = rm_state_backoff_reason (ctx->state, conf->name);
  gint64 until = rm_state_backoff_until (ctx->state, conf->name);
  RmQuotaSpec spec;
  RmAllowance a;

  rm_context_quota_spec (ctx, i, &spec);
  if (!rm_state_allowance (ctx->state, &spec, now, ctx->tz, &a, &error))
    {
      printf ("  %-16s %s\n", conf->name, error->message);
      return;
    }
  last = stamp (a.last_send, ctx->tz);
  if (spec.warmup != NULL)
    printf ("  %-16s ramp day %u, allowance %" G_GUINT64_FORMAT
            ", used %" G_GUINT64_FORMAT ", left %" G_GUINT64_FORMAT
            ", last send %s\n",
            conf->name, a.ramp_day, a.allowance, a.used, a.left, last);
  else
    printf ("  %-16s no daily limit (warmup = none), last send %s\n",
            conf->name, last);
  if (a.left == 0 && a.reason != NULL)
    {
      g_autofree char *next = stamp (a.next_window, ctx->tz);

      printf ("  %-16s waits: %s; next window at %s\n", "", a.reason, next);
    }
  if (until > now)
    {
      g_autofree char *when = stamp (until, ctx->tz);
      g_autofree char *why = rm_log_escape (held ? held : "it failed");

      printf ("  %-16s held until %s: %s\n", "", when, why);
    }
}

/* A made-up history that puts a server on ramp day ramp_day today (day
 * number ramp_day): full days 1 .. ramp_day - 1. */
static GArray *
synthetic_history (guint ramp_day)
{
  GArray *days = g_array_new (FALSE, FALSE, sizeof (RmSendDay));

  for (guint d = 1; d < ramp_day; d++)
    {
      RmSendDay day = { d, G_MAXUINT32 };

      g_array_append_val (days, day);
    }
  return days;
}

/* The day the queue would be empty if every server sent its whole
 * allowance each day from now on, or NULL beyond the horizon. */
static char *
projection (RmContext *ctx, guint64 waiting, gint64 now)
{
  guint n = ctx->config->servers->len;
  g_autofree RmQuotaSpec *specs = g_new0 (RmQuotaSpec, n);
  g_autofree RmAllowance *today = g_new0 (RmAllowance, n);
  g_autoptr (GPtrArray) histories = g_ptr_array_new_with_free_func (
      (GDestroyNotify) g_array_unref);
  guint64 sent = 0;

  for (guint i = 0; i < n; i++)
    {
      rm_context_quota_spec (ctx, i, &specs[i]);
      if (specs[i].warmup == NULL)
        return g_strdup ("today (a server has no daily limit)");
      rm_state_allowance (ctx->state, &specs[i], now, ctx->tz, &today[i],
                          NULL);
      g_ptr_array_add (histories, synthetic_history (today[i].ramp_day));
    }
  for (guint k = 0; k < HORIZON_DAYS; k++)
    {
      for (guint i = 0; i < n; i++)
        {
          GArray *hist = histories->pdata[i];
          RmSendDay day = { today[i].ramp_day + k, G_MAXUINT32 };
          guint ramp;

          sent += k == 0 ? today[i].left
                         : specs[i].warmup->allowance (
                             &specs[i].params, (RmSendDay *) hist->data,
                             hist->len, day.day, &ramp);
          g_array_append_val (hist, day);
        }
      if (sent >= waiting)
        {
          g_autoptr (GDateTime) utc = g_date_time_new_from_unix_utc (now);
          g_autoptr (GDateTime) local = g_date_time_to_timezone (utc,
                                                                 ctx->tz);
          g_autoptr (GDateTime) day = g_date_time_add_days (local, (gint) k);

          return g_date_time_format (day, "%Y-%m-%d");
        }
    }
  return NULL;
}

static gint64
entry_size (RmContext *ctx, const char *id)
{
  g_autofree char *path = g_build_filename (rm_queue_dir (ctx->queue), "data",
                                            id, NULL);
  GStatBuf st;

  return g_stat (path, &st) == 0 ? (gint64) st.st_size : 0;
}

static guint64
print_queue (RmContext *ctx, gint64 now)
{
  g_autoptr (GPtrArray) ids = rm_queue_list (ctx->queue, NULL);
  guint64 rcpts = 0;

  printf ("\nQueue:\n");
  for (guint i = 0; ids != NULL && i < ids->len; i++)
    {
      g_autoptr (RmEntry) e = rm_queue_load (ctx->queue, ids->pdata[i], NULL);
      g_autofree char *why = NULL;
      g_autofree char *next = NULL;

      if (e == NULL)
        continue;
      rcpts += e->rcpts->len;
      why = rm_log_escape (e->last_error ? e->last_error : "due now");
      next = stamp (e->next_attempt, ctx->tz);
      printf ("  %s  age %" G_GINT64_FORMAT "s  %" G_GINT64_FORMAT
              " octets  <%s>  %u recipients\n",
              e->id, MAX (now - e->created, 0), entry_size (ctx, e->id),
              e->sender, e->rcpts->len);
      for (guint k = 0; k < e->rcpts->len && k < 5; k++)
        printf ("    to %s\n", (char *) e->rcpts->pdata[k]);
      if (e->rcpts->len > 5)
        printf ("    and %u more\n", e->rcpts->len - 5);
      printf ("    waits: %s; next attempt %s\n", why,
              e->next_attempt > now ? next : "now");
    }
  if (rcpts == 0)
    printf ("  empty\n");
  return rcpts;
}

int
rm_status_print (RmContext *ctx, GError **error)
{
  gint64 now = now_seconds ();
  g_autofree char *empty = NULL;
  guint64 waiting;

  if (ctx->state == NULL)
    ctx->state = rm_state_open (ctx->config->state_dir, error);
  if (ctx->state == NULL)
    return -1;
  printf ("Servers (day boundary: %s):\n",
          ctx->config->timezone ? ctx->config->timezone : "local time");
  for (guint i = 0; i < ctx->config->servers->len; i++)
    print_server (ctx, i, now);
  waiting = print_queue (ctx, now);
  if (waiting > 0)
    {
      empty = projection (ctx, waiting, now);
      printf ("\n%" G_GUINT64_FORMAT " recipients wait; at today's "
              "allowances and ramp the queue is empty on %s\n",
              waiting, empty ? empty : "(more than a year away)");
    }
  return 0;
}
