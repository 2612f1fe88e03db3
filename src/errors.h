/* Errors inside rampmail and their exit codes at the edge.
 *
 * Every module reports failures as a GError in the RM_ERROR domain. The
 * code says what kind of failure it is, and rm_error_exit_code() maps it to
 * a sysexits(3) value; only main() exits. Messages are lowercase, without a
 * final period, and callers add context with g_prefix_error().
 */
#ifndef RM_ERRORS_H
#define RM_ERRORS_H

#include <glib.h>

typedef enum {
  RM_ERROR_USAGE,       /* bad command line               -> EX_USAGE */
  RM_ERROR_DATA,        /* bad input message or address   -> EX_DATAERR */
  RM_ERROR_NOUSER,      /* unknown local user             -> EX_NOUSER */
  RM_ERROR_UNAVAILABLE, /* refused for good (5xx)         -> EX_UNAVAILABLE */
  RM_ERROR_SOFTWARE,    /* internal error                 -> EX_SOFTWARE */
  RM_ERROR_OS,          /* system call failed             -> EX_OSERR */
  RM_ERROR_CANTCREAT,   /* cannot create a queue file     -> EX_CANTCREAT */
  RM_ERROR_IO,          /* read or write failed           -> EX_IOERR */
  RM_ERROR_TEMPFAIL,    /* try again later                -> EX_TEMPFAIL */
  RM_ERROR_NOPERM,      /* permission denied              -> EX_NOPERM */
  RM_ERROR_CONFIG,      /* bad configuration or plugin    -> EX_CONFIG */
} RmErrorCode;

#define RM_ERROR (rm_error_quark ())
GQuark rm_error_quark (void);

/* The sysexits(3) code for error; EX_SOFTWARE for foreign domains. */
int rm_error_exit_code (const GError *error);

/* Sets error from errno with "what: strerror" and a code chosen from errno
 * (ENOSPC and EDQUOT give RM_ERROR_TEMPFAIL, EACCES RM_ERROR_NOPERM). */
void rm_error_set_errno (GError **error, int errsv, RmErrorCode fallback,
                         const char *format, ...) G_GNUC_PRINTF (4, 5);

#endif
