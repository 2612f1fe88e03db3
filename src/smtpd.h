/* -bs: SMTP submission on standard input and output; see smtpd.c. */
#ifndef RM_SMTPD_H
#define RM_SMTPD_H

#include "cmdline.h"
#include "deliver.h"

/* Speaks SMTP on stdin/stdout until QUIT or the end of input, queuing
 * each message as a normal submission. Returns a sysexits code. */
int rm_smtpd_run (RmContext *ctx, const RmOptions *opts, GError **error);

#endif
