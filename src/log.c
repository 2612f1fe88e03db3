/* The log writer. GLib 2.74's default writer drops info messages and has
 * no syslog mail facility, so rampmail installs its own. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"

static char *log_path;
static gboolean echo_warnings = TRUE;
static gboolean echo_info;
static gboolean syslog_open;

static int
syslog_priority (GLogLevelFlags level)
{
  if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
    return LOG_ERR;
  if (level & G_LOG_LEVEL_WARNING)
    return LOG_WARNING;
  if (level & G_LOG_LEVEL_DEBUG)
    return LOG_DEBUG;
  return LOG_INFO;
}

static const char *
level_word (GLogLevelFlags level)
{
  if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
    return "error";
  if (level & G_LOG_LEVEL_WARNING)
    return "warning";
  return "info";
}

static void
write_file (GLogLevelFlags level, const char *message)
{
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *stamp = g_date_time_format (now, "%Y-%m-%dT%H:%M:%S%z");
  FILE *fp = fopen (log_path, "a");

  if (fp == NULL)
    return;
  fprintf (fp, "%s rampmail[%ld]: %s: %s\n", stamp, (long) getpid (),
           level_word (level), message);
  fclose (fp);
}

static GLogWriterOutput
writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields,
        gpointer user_data)
{
  const char *message = NULL;
  gboolean important = (level
                        & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL
                           | G_LOG_LEVEL_WARNING))
                       != 0;

  for (gsize i = 0; i < n_fields; i++)
    if (g_strcmp0 (fields[i].key, "MESSAGE") == 0)
      message = fields[i].value;
  if (message == NULL)
    return G_LOG_WRITER_UNHANDLED;
  if (level & G_LOG_LEVEL_DEBUG)
    return G_LOG_WRITER_HANDLED;

  if (log_path != NULL)
    write_file (level, message);
  else
    {
      if (!syslog_open)
        openlog ("rampmail", LOG_PID, LOG_MAIL);
      syslog_open = TRUE;
      syslog (syslog_priority (level), "%s", message);
    }

  if ((important && echo_warnings) || (!important && echo_info))
    fprintf (stderr, "rampmail: %s\n", message);
  return G_LOG_WRITER_HANDLED;
}

void
rm_log_init (const char *log_file)
{
  static gboolean installed;

  g_free (log_path);
  log_path = g_strdup (log_file);
  if (!installed)
    g_log_set_writer_func (writer, NULL, NULL);
  installed = TRUE;
}

void
rm_log_set_stderr (gboolean warnings, gboolean info)
{
  echo_warnings = warnings;
  echo_info = info;
}

char *
rm_log_escape (const char *text)
{
  GString *out;

  if (text == NULL || *text == '\0')
    return g_strdup ("");
  out = g_string_new (NULL);
  for (const unsigned char *p = (const unsigned char *) text; *p; p++)
    {
      if (*p < 0x20 || *p == 0x7f || *p == '\\' || *p == '"')
        g_string_append_printf (out, "\\x%02x", *p);
      else
        g_string_append_c (out, *p);
    }
  return g_string_free (out, FALSE);
}
