/* Delivery: queued entries go to servers, one SMTP session per server.
 *
 * A delivery run locks the entries that are due (all of them on a flush),
 * lets the selector pick a server for each among the servers that are not
 * backed off and not yet tried for that entry in this run, and sends each
 * server's share over one session. Then it sorts every recipient:
 *
 *  - accepted: leaves the entry;
 *  - refused for good (5xx): a bounce (RFC 3464) goes to the sender, or,
 *    for the null sender, the recipient is kept in the failed area;
 *  - temporary (refused connection, timeout, 4xx): the next round offers
 *    it to another server; when none is left it stays queued and the entry
 *    is retried later (rm_state_retry_delay over retry_min..retry_max);
 *  - unknown (connection lost after the final dot): the server may have
 *    taken it (RFC 1047), so it is not offered to another server in this
 *    run; it waits for a later retry.
 *
 * A server whose session failed as a whole is backed off by the same
 * schedule, so it is not hammered by every message. An entry that has
 * been queued for longer than queue_lifetime is bounced as expired.
 */
#ifndef RM_DELIVER_H
#define RM_DELIVER_H

#include <glib.h>

#include "conf.h"
#include "queue.h"
#include "state.h"

typedef struct {
  RmConfig *config; /* borrowed */
  RmQueue *queue;
  RmState *state; /* opened on first use */
  const RmSelectorOps *selector;
  const RmWarmupOps **warmups; /* per server of config; NULL: no ramp */
  GTimeZone *tz;               /* the day boundary */
  GRand *rnd;
} RmContext;

/* Recipient counts of one or more runs. */
typedef struct {
  guint sent;
  guint deferred;
  guint failed;    /* refused for good or expired */
  guint busy;      /* entries another process was delivering */
  guint attempted; /* entries offered to a server */
} RmDeliverStats;

typedef struct {
  gboolean flush;      /* ignore retry times and server backoff */
  const char *only_id; /* only this entry, or NULL for all */
} RmRunOptions;

/* Opens the queue and loads the selector and warmup plugins named by
 * config. */
gboolean rm_context_init (RmContext *ctx, RmConfig *config, GError **error);
void rm_context_clear (RmContext *ctx);

/* The limits of server i of the configuration. */
void rm_context_quota_spec (const RmContext *ctx, guint i, RmQuotaSpec *spec);

/* The current day as YYYY-MM-DD in the configured time zone. */
char *rm_context_today (const RmContext *ctx);

/* Fills srv, the transport's view of server conf; password (may be NULL)
 * is borrowed. */
void rm_server_view (const RmConfig *config, const RmServerConf *conf,
                     const char *password, RmServer *srv);

/* One delivery run over the queue (or one entry). Returns FALSE only if
 * the queue could not be read; problems with single entries are logged
 * and leave them queued. */
gboolean rm_deliver_run (RmContext *ctx, const RmRunOptions *run,
                         RmDeliverStats *stats, GError **error);

#endif
