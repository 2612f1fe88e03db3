/* The queue runner: the one process that works through the queue.
 *
 * No daemon is needed. A submission commits its entry and calls
 * rm_runner_kick(): if no process holds the runner lock (queue_dir/
 * runner.lock), it forks a runner that delivers everything due, over one
 * session per server, and exits once nothing is due. A runner that is
 * already at work sees the new entry: after releasing the lock it looks
 * for due entries once more and takes the lock again if it finds any, so
 * an entry committed while a runner finishes is never left behind.
 *
 * Entries that wait for a retry need a later run: `rampmail -q` from cron
 * or the systemd timer in doc/, or a long-running `rampmail -q30m`.
 */
#ifndef RM_RUNNER_H
#define RM_RUNNER_H

#include "deliver.h"

/* Starts a background runner unless one is at work. Returns at once. */
void rm_runner_kick (RmContext *ctx);

/* -q and -qIID: waits for the runner lock, then delivers every entry (or
 * only only_id) now, whatever the retry times and server backoff say. */
gboolean rm_runner_flush (RmContext *ctx, const char *only_id,
                          RmDeliverStats *stats, GError **error);

/* -qINTERVAL: delivers what is due every interval seconds, forever. */
gboolean rm_runner_every (RmContext *ctx, guint interval, GError **error);

#endif
