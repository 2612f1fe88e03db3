/* rampmail --status: per server the ramp day, today's allowance, what is
 * used and left, the last send and why it is held; per queued message why
 * it waits; and the day the queue will be empty at today's allowances and
 * ramp. */
#ifndef RM_STATUS_H
#define RM_STATUS_H

#include "deliver.h"

/* Prints the status to standard output; returns a sysexits code, or -1
 * with error. */
int rm_status_print (RmContext *ctx, GError **error);

#endif
