/* Bounces: RFC 3464 delivery status notifications.
 *
 * When recipients are refused for good (5xx) or a message expires in the
 * queue, rampmail tells the envelope sender with a DSN that names only
 * those recipients and the server's reply. The DSN is queued like any
 * other message, from the null sender, so it goes out through the same
 * servers. Mail from the null sender is never bounced.
 *
 * The DSN's queue id is derived from the original's (ID-B<n>, n counting
 * the bounces of that message), so a bounce that is queued again after a
 * crash replaces nothing and is not sent twice.
 */
#ifndef RM_BOUNCE_H
#define RM_BOUNCE_H

#include <glib.h>

#include "conf.h"
#include "queue.h"

typedef enum {
  RM_BOUNCE_FAILED,  /* refused by a server (5xx) */
  RM_BOUNCE_EXPIRED, /* still failing after the queue lifetime */
} RmBounceReason;

/* One refused recipient. */
typedef struct {
  const char *address;
  const char *reply;  /* the server's reply, "550 5.1.1 no such user";
                           * for an expired message the last error */
  const char *server; /* the [server NAME] that gave the reply, or NULL */
  const char *host;   /* that server's host, or NULL */
} RmBounceRcpt;

/* Queues a DSN to entry->sender about rcpts (n >= 1). data_fd is the
 * original message (readable, seekable); its header section is attached as
 * text/rfc822-headers. serial tells bounces of one message apart (use the
 * entry's attempt count). Returns TRUE without queuing anything if
 * entry->sender is "" (never bounce a bounce) or if the DSN of this id and
 * serial is already queued; sets *bounce_id (may be NULL) to the new id,
 * or NULL when nothing was queued. */
gboolean rm_bounce_queue (RmQueue *queue, const RmConfig *config,
                          const RmEntry *entry, int data_fd,
                          const RmBounceRcpt *rcpts, gsize n,
                          RmBounceReason reason, guint serial,
                          char **bounce_id, GError **error);

#endif
