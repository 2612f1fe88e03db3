/* Delivery: take a queued entry, let the selector pick a server, hand the
 * message to that server's transport and record what became of each
 * recipient.
 *
 * A recipient the server accepted leaves the entry. A recipient refused
 * for good (5xx) goes to the failed area with the reply. A temporary
 * failure (refused connection, timeout, 4xx) tries the next server that
 * has not been tried for this entry in this run; when none is left, the
 * recipient stays queued for a later run. A connection lost after the
 * final dot may have delivered the message, so it is never retried on
 * another server at once (RFC 1047).
 */
#ifndef RM_DELIVER_H
#define RM_DELIVER_H

#include <glib.h>

#include "conf.h"
#include "queue.h"
#include "state.h"

typedef struct {
  RmConfig *config;       /* borrowed */
  RmQueue *queue;
  RmState *state;         /* opened on first use */
  const RmSelectorOps *selector;
  GTimeZone *tz;          /* the day boundary */
  GRand *rnd;
} RmContext;

/* Recipient counts of one or more deliveries. */
typedef struct {
  guint sent;
  guint deferred;
  guint failed;
  guint busy;             /* entries another process was delivering */
} RmDeliverStats;

/* Opens the queue and loads the selector named by config. */
gboolean rm_context_init (RmContext *ctx, RmConfig *config, GError **error);
void rm_context_clear (RmContext *ctx);

/* The current day as YYYY-MM-DD in the configured time zone. */
char *rm_context_today (const RmContext *ctx);

/* Delivers entry id once. Returns FALSE only when the entry could not be
 * handled at all (it stays queued); recipient outcomes go to stats. */
gboolean rm_deliver_entry (RmContext *ctx, const char *id,
                           RmDeliverStats *stats, GError **error);

/* Delivers every queued entry once, in submission order. */
gboolean rm_deliver_queue (RmContext *ctx, RmDeliverStats *stats,
                           GError **error);

#endif
