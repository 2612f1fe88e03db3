/* Submission: one message from standard input into the queue, then
 * delivered as the delivery mode says.
 *
 * The envelope: recipients from the command line, plus with -t those of
 * To, Cc and Bcc (or of Resent-To, Resent-Cc and Resent-Bcc when any of
 * those is present); bare local names go through the aliases file or get
 * the configured domain; duplicates are dropped. The sender is -f/-r, else
 * the configuration's fixed sender, else the submitting user's login at
 * the configured domain.
 *
 * Delivery: -odi delivers in this process; -odb (the default) makes sure
 * the queue runner is at work (runner.h) and returns; -odq only queues.
 *
 * Nothing is queued when the command line or the message is refused. Once
 * the entry is committed, the exit status is 0 unless every recipient was
 * refused for good (EX_UNAVAILABLE): a caller that retries after a partial
 * refusal would duplicate what was delivered.
 */
#ifndef RM_SUBMIT_H
#define RM_SUBMIT_H

#include "cmdline.h"
#include "deliver.h"

/* Where a message comes from. */
typedef struct {
  int fd;               /* the message, read to its end or a lone dot */
  const char *with;     /* added to the Received field: "" or
                           * " with ESMTP" */
  gboolean kick_runner; /* start the queue runner in background mode */
} RmSubmitSource;

/* Submits the message on standard input. Returns a sysexits code, or -1
 * with error set. */
int rm_submit (RmContext *ctx, const RmOptions *opts, GError **error);

/* The same from source; *queue_id (may be NULL) gets the id of the
 * committed entry. */
int rm_submit_from (RmContext *ctx, const RmOptions *opts,
                    const RmSubmitSource *source, char **queue_id,
                    GError **error);

#endif
