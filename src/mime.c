/* The MIME helpers of mime.h: rm_mime_rewrite_from() here, the GMime work
 * in the module of mime-module.h, loaded on first use. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "errors.h"
#include "mime.h"
#include "mime-module.h"
#include "modules.h"

static char *module_dir;
static const RmMimeModule *module;

void
rm_mime_set_module_dir (const char *dir)
{
  g_free (module_dir);
  module_dir = g_strdup (dir);
}

void
rm_mime_use_module (const RmMimeModule *table)
{
  module = table;
}

gboolean
rm_mime_check_module (const RmMimeModule *table, const char *path,
                      GError **error)
{
  if (table->version != RM_MIME_MODULE_VERSION)
    g_set_error (error, RM_ERROR, RM_ERROR_UNAVAILABLE,
                 "the MIME module %s has interface version %u, rampmail "
                 "needs %u (a module from another rampmail?)",
                 path, table->version, (unsigned) RM_MIME_MODULE_VERSION);
  else if (table->size != sizeof (RmMimeModule) || table->encode_field == NULL
           || table->limit_lines == NULL || table->to_7bit == NULL)
    g_set_error (error, RM_ERROR, RM_ERROR_UNAVAILABLE,
                 "the MIME module %s has an incomplete table", path);
  else
    return TRUE;
  return FALSE;
}

/* Opens the module in the plugin directory once; it stays loaded. */
static const RmMimeModule *
load (GError **error)
{
  g_autofree char *path = NULL;
  const RmMimeModule *table;

  if (module != NULL)
    return module;
  table = rm_modules_open (module_dir ? module_dir : RM_PLUGINDIR,
                           RM_MIME_MODULE_NAME, RM_MIME_MODULE_SYMBOL,
                           "the MIME module", RM_ERROR_UNAVAILABLE, &path,
                           error);
  if (table == NULL || !rm_mime_check_module (table, path, error))
    return NULL;
  module = table;
  return module;
}

gboolean
rm_mime_check_available (GError **error)
{
  return load (error) != NULL;
}

char *
rm_mime_encode_field (const char *name, const char *value, GError **error)
{
  const RmMimeModule *m = load (error);

  if (m == NULL)
    {
      g_prefix_error (error, "the %s field has 8-bit text: ", name);
      return NULL;
    }
  return m->encode_field (name, value);
}

gboolean
rm_mime_limit_lines (int in_fd, int out_fd, GError **error)
{
  const RmMimeModule *m = load (error);

  if (m == NULL)
    {
      g_prefix_error (error, "a body line is over 998 octets: ");
      return FALSE;
    }
  return m->limit_lines (in_fd, out_fd, error);
}

int
rm_mime_downgrade (int fd, GError **error)
{
  const RmMimeModule *m = load (error);
  int out;

  if (m == NULL)
    {
      g_prefix_error (error, "the server does not offer 8BITMIME: ");
      return -1;
    }
  out = memfd_create ("rampmail-7bit", MFD_CLOEXEC);
  if (out < 0)
    {
      rm_error_set_errno (error, errno, RM_ERROR_IO, "memfd_create");
      return -1;
    }
  if (!m->to_7bit (fd, out, error) || lseek (out, 0, SEEK_SET) < 0)
    {
      g_prefix_error (error, "cannot make a 7-bit copy: ");
      close (out);
      return -1;
    }
  return out;
}

/* Reads fd from its start up to the end of the header section (the empty
 * line included) into a string; *body_at is the offset of the body. */
static GString *
read_header (int fd, gint64 *body_at, GError **error)
{
  GString *head = g_string_new (NULL);
  char buf[8192];
  char *end;
  ssize_t n;

  if (lseek (fd, 0, SEEK_SET) < 0)
    goto fail;
  while ((end = strstr (head->str, "\r\n\r\n")) == NULL)
    {
      n = read (fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        goto fail;
      if (n == 0 || head->len > 8 * 1024 * 1024)
        break;
      g_string_append_len (head, buf, n);
    }
  *body_at = end ? (gint64) (end - head->str) + 4 : (gint64) head->len;
  g_string_truncate (head, (gsize) *body_at);
  return head;

fail:
  rm_error_set_errno (error, errno, RM_ERROR_IO, "read the message");
  g_string_free (head, TRUE);
  return NULL;
}

/* The fields of head with From replaced; the old From becomes Reply-To if
 * there is none. */
static GString *
replace_from (const char *head, const char *account)
{
  g_auto (GStrv) lines = g_strsplit (head, "\r\n", -1);
  GString *out = g_string_new (NULL);
  g_autoptr (GString) old_from = g_string_new (NULL);
  gboolean in_from = FALSE;
  gboolean reply_to = FALSE;

  for (gsize i = 0; lines[i] != NULL && *lines[i] != '\0'; i++)
    {
      const char *line = lines[i];
      gboolean cont = (line[0] == ' ' || line[0] == '\t');

      if (!cont)
        in_from = g_ascii_strncasecmp (line, "From:", 5) == 0;
      if (!cont && g_ascii_strncasecmp (line, "Reply-To:", 9) == 0)
        reply_to = TRUE;
      if (in_from)
        {
          g_string_append_printf (old_from, "%s%s",
                                  old_from->len ? "\r\n" : "",
                                  cont ? line : line + 5);
          continue;
        }
      g_string_append_printf (out, "%s\r\n", line);
    }
  g_string_append_printf (out, "From: <%s>\r\n", account);
  if (!reply_to && old_from->len > 0)
    g_string_append_printf (out, "Reply-To:%s\r\n", old_from->str);
  g_string_append (out, "\r\n");
  return out;
}

int
rm_mime_rewrite_from (int fd, const char *account, GError **error)
{
  gint64 body_at = 0;
  g_autoptr (GString) head = read_header (fd, &body_at, error);
  g_autoptr (GString) fields = NULL;
  char buf[65536];
  ssize_t n;
  int out;

  if (head == NULL)
    return -1;
  fields = replace_from (head->str, account);
  out = memfd_create ("rampmail-from", MFD_CLOEXEC);
  if (out < 0
      || write (out, fields->str, fields->len) != (ssize_t) fields->len
      || lseek (fd, body_at, SEEK_SET) < 0)
    goto fail;
  while ((n = read (fd, buf, sizeof buf)) != 0)
    {
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 || write (out, buf, (size_t) n) != n)
        goto fail;
    }
  lseek (out, 0, SEEK_SET);
  return out;

fail:
  rm_error_set_errno (error, errno, RM_ERROR_IO, "rewrite From");
  if (out >= 0)
    close (out);
  return -1;
}
