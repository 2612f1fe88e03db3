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

/* Returns a sysexits code, or -1 with error set. */
int rm_submit (RmContext *ctx, const RmOptions *opts, GError **error);

#endif
