/* The queue runner; see runner.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "log.h"
#include "runner.h"

/* Temporary files older than this are remains of a killed submission. */
#define STALE_TMP_SECONDS (24 * 3600)

/* A bound on lock hand-overs, so that a runner can never spin. */
#define MAX_PASSES 1000

/* Before a pass the runner waits until no entry has arrived for QUIET_MS
 * (at most SETTLE_MAX_MS), so that a burst of submissions, such as a PHP
 * loop calling mail(), goes out in one session per server. */
#define QUIET_MS 300
#define SETTLE_MAX_MS 5000
#define SETTLE_STEP_MS 100

/* TRUE if some entry is due and no process holds its lock. */
static gboolean
anything_due (RmContext *ctx)
{
  g_autoptr (GPtrArray) ids = rm_queue_list (ctx->queue, NULL);
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;

  for (guint i = 0; ids != NULL && i < ids->len; i++)
    {
      g_autoptr (RmEntry) entry = rm_queue_load (ctx->queue, ids->pdata[i],
                                                 NULL);
      int fd;

      if (entry != NULL && entry->next_attempt > now)
        continue;
      fd = rm_queue_lock (ctx->queue, ids->pdata[i], NULL);
      if (fd >= 0)
        {
          close (fd);
          return TRUE;
        }
    }
  return FALSE;
}

static guint
count_entries (RmContext *ctx)
{
  g_autoptr (GPtrArray) ids = rm_queue_list (ctx->queue, NULL);

  return ids != NULL ? ids->len : 0;
}

static void
settle (RmContext *ctx)
{
  guint last = count_entries (ctx);
  guint quiet = 0;

  for (guint waited = 0; waited < SETTLE_MAX_MS && quiet < QUIET_MS;
       waited += SETTLE_STEP_MS)
    {
      guint now;

      g_usleep (SETTLE_STEP_MS * 1000);
      now = count_entries (ctx);
      quiet = (now == last) ? quiet + SETTLE_STEP_MS : 0;
      last = now;
    }
}

/* Runs until nothing is due; lock_fd is the runner lock, closed here. */
static void
run_until_idle (RmContext *ctx, int lock_fd)
{
  RmRunOptions run = { FALSE, NULL };
  guint stale = rm_queue_clean_tmp (ctx->queue, STALE_TMP_SECONDS);

  if (stale > 0)
    rm_log_info ("removed %u stale files from tmp/", stale);
  for (int pass = 0; pass < MAX_PASSES; pass++)
    {
      RmDeliverStats stats = { 0 };
      g_autoptr (GError) error = NULL;

      settle (ctx);
      if (!rm_deliver_run (ctx, &run, &stats, &error))
        {
          rm_log_error ("queue run: %s", error->message);
          break;
        }
      if (stats.attempted > 0)
        {
          rm_log_info ("queue run: sent=%u deferred=%u failed=%u", stats.sent,
                       stats.deferred, stats.failed);
          continue;
        }
      /* Idle: let go, then make sure nothing arrived meanwhile. */
      close (lock_fd);
      lock_fd = -1;
      if (!anything_due (ctx))
        return;
      lock_fd = rm_queue_lock_runner (ctx->queue, FALSE, NULL);
      if (lock_fd < 0)
        return; /* another runner took over */
    }
  if (lock_fd >= 0)
    close (lock_fd);
}

static void
detach (void)
{
  int null = open ("/dev/null", O_RDWR);

  setsid ();
  if (null >= 0)
    {
      dup2 (null, STDIN_FILENO);
      dup2 (null, STDOUT_FILENO);
      dup2 (null, STDERR_FILENO);
      if (null > STDERR_FILENO)
        close (null);
    }
  rm_log_set_stderr (FALSE, FALSE);
}

void
rm_runner_kick (RmContext *ctx)
{
  g_autoptr (GError) error = NULL;
  int lock_fd = rm_queue_lock_runner (ctx->queue, FALSE, &error);
  pid_t pid;

  if (lock_fd < 0)
    {
      if (error != NULL)
        rm_log_warn ("cannot start a queue runner: %s", error->message);
      return;
    }
  pid = fork ();
  if (pid < 0)
    {
      rm_log_warn ("cannot start a queue runner: %s; run rampmail -q",
                   g_strerror (errno));
      close (lock_fd);
      return;
    }
  if (pid > 0)
    {
      close (lock_fd); /* the child's copy keeps the lock */
      return;
    }
  detach ();
  /* The child must not use the parent's database connection. */
  ctx->state = NULL;
  run_until_idle (ctx, lock_fd);
  _exit (0);
}

gboolean
rm_runner_flush (RmContext *ctx, const char *only_id, RmDeliverStats *stats,
                 GError **error)
{
  RmRunOptions run = { TRUE, only_id };
  int lock_fd = rm_queue_lock_runner (ctx->queue, TRUE, error);
  gboolean ok;

  if (lock_fd < 0)
    return FALSE;
  rm_queue_clean_tmp (ctx->queue, STALE_TMP_SECONDS);
  ok = rm_deliver_run (ctx, &run, stats, error);
  close (lock_fd);
  return ok;
}

gboolean
rm_runner_every (RmContext *ctx, guint interval, GError **error)
{
  RmRunOptions run = { FALSE, NULL };

  for (;;)
    {
      RmDeliverStats stats = { 0 };
      int lock_fd = rm_queue_lock_runner (ctx->queue, TRUE, error);

      if (lock_fd < 0)
        return FALSE;
      if (!rm_deliver_run (ctx, &run, &stats, error))
        {
          close (lock_fd);
          return FALSE;
        }
      close (lock_fd);
      if (stats.attempted > 0)
        rm_log_info ("queue run: sent=%u deferred=%u failed=%u", stats.sent,
                     stats.deferred, stats.failed);
      sleep (interval);
    }
}
