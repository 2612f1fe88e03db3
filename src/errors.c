/* Error domain and the single mapping from errors to sysexits codes. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sysexits.h>

#include "errors.h"

G_DEFINE_QUARK (rm - error - quark, rm_error)

int
rm_error_exit_code (const GError *error)
{
  static const int map[] = {
    [RM_ERROR_USAGE] = EX_USAGE,
    [RM_ERROR_DATA] = EX_DATAERR,
    [RM_ERROR_NOUSER] = EX_NOUSER,
    [RM_ERROR_UNAVAILABLE] = EX_UNAVAILABLE,
    [RM_ERROR_SOFTWARE] = EX_SOFTWARE,
    [RM_ERROR_OS] = EX_OSERR,
    [RM_ERROR_CANTCREAT] = EX_CANTCREAT,
    [RM_ERROR_IO] = EX_IOERR,
    [RM_ERROR_TEMPFAIL] = EX_TEMPFAIL,
    [RM_ERROR_NOPERM] = EX_NOPERM,
    [RM_ERROR_CONFIG] = EX_CONFIG,
  };

  if (error == NULL)
    return EX_OK;
  if (error->domain != RM_ERROR || error->code < 0
      || (gsize) error->code >= G_N_ELEMENTS (map))
    return EX_SOFTWARE;
  return map[error->code];
}

void
rm_error_set_errno (GError **error, int errsv, RmErrorCode fallback,
                    const char *format, ...)
{
  g_autofree char *what = NULL;
  RmErrorCode code = fallback;
  va_list ap;

  va_start (ap, format);
  what = g_strdup_vprintf (format, ap);
  va_end (ap);

  if (errsv == ENOSPC || errsv == EDQUOT)
    code = RM_ERROR_TEMPFAIL;
  else if (errsv == EACCES || errsv == EPERM)
    code = RM_ERROR_NOPERM;
  g_set_error (error, RM_ERROR, code, "%s: %s", what, g_strerror (errsv));
}
