/* Logging: one line per event, to syslog's mail facility or to a file.
 *
 * Lines read "QUEUEID: event key=value key=value ..."; values that came
 * from outside (addresses, server replies) are escaped by rm_log_escape()
 * so a line can never be split or forged. Warnings and errors also go to
 * standard error while a caller is attached (rm_log_set_stderr).
 */
#ifndef RM_LOG_H
#define RM_LOG_H

#include <glib.h>

/* Installs the writer. log_file NULL means syslog (LOG_MAIL) with ident
 * "rampmail". Safe to call again after the configuration is read. */
void rm_log_init (const char *log_file);

/* Whether warnings and errors are echoed to stderr (default TRUE) and
 * whether info lines are too (-v). */
void rm_log_set_stderr (gboolean warnings, gboolean info);

/* Returns text with control characters, backslashes and double quotes
 * shown as \xHH, so that it can stand inside "..." on one line; "" for
 * NULL. */
char *rm_log_escape (const char *text);

#define rm_log_info(...) g_log ("rampmail", G_LOG_LEVEL_INFO, __VA_ARGS__)
#define rm_log_warn(...) g_log ("rampmail", G_LOG_LEVEL_WARNING, __VA_ARGS__)
#define rm_log_error(...)                                                    \
  g_log ("rampmail", G_LOG_LEVEL_CRITICAL, __VA_ARGS__)

#endif
