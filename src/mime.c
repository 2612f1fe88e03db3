/* MIME work on GMime; see mime.h. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gmime/gmime.h>

#include "errors.h"
#include "mime.h"

static void
mime_init (void)
{
  static gsize done;

  if (g_once_init_enter (&done))
    {
      g_mime_init ();
      g_once_init_leave (&done, 1);
    }
}

static gboolean
is_address_field (const char *name)
{
  static const char *const names[] = {
    "From",      "Sender",    "Reply-To",    "To",
    "Cc",        "Bcc",       "Resent-From", "Resent-Sender",
    "Resent-To", "Resent-Cc", "Resent-Bcc",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
    if (g_ascii_strcasecmp (name, names[i]) == 0)
      return TRUE;
  return FALSE;
}

/* value as valid UTF-8: octets that are not UTF-8 are read as Latin-1. */
static char *
as_utf8 (const char *value)
{
  char *out;

  if (g_utf8_validate (value, -1, NULL))
    return g_strdup (value);
  out = g_convert (value, -1, "UTF-8", "ISO-8859-1", NULL, NULL, NULL);
  if (out == NULL)
    out = g_utf8_make_valid (value, -1);
  return out;
}

static char *
encode_addresses (const char *value)
{
  InternetAddressList *list = internet_address_list_parse (NULL, value);
  char *out = NULL;

  if (list != NULL && internet_address_list_length (list) > 0)
    out = internet_address_list_to_string (list, NULL, TRUE);
  g_clear_object (&list);
  return out;
}

char *
rm_mime_encode_field (const char *name, const char *value)
{
  g_autofree char *text = as_utf8 (value);
  g_autofree char *encoded = NULL;

  mime_init ();
  if (is_address_field (name))
    encoded = encode_addresses (text);
  if (encoded == NULL)
    encoded = g_mime_utils_header_encode_text (NULL, text, "utf-8");
  /* GMime folds nothing here, but be sure the result is one line. */
  g_strdelimit (encoded, "\r\n", ' ');
  return g_strdup_printf ("%s: %s", name, g_strstrip (encoded));
}

static void
limit_part (GMimeObject *parent, GMimeObject *object, gpointer user_data)
{
  GMimePart *part;
  GMimeContentEncoding now, best;

  if (!GMIME_IS_PART (object))
    return;
  part = GMIME_PART (object);
  now = g_mime_part_get_content_encoding (part);
  if (now == GMIME_CONTENT_ENCODING_BASE64
      || now == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE
      || now == GMIME_CONTENT_ENCODING_UUENCODE)
    return;
  best = g_mime_part_get_best_content_encoding (
      part, GMIME_ENCODING_CONSTRAINT_8BIT);
  if (best == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE
      || best == GMIME_CONTENT_ENCODING_BASE64)
    g_mime_part_set_content_encoding (part, best);
}

static gboolean
write_message (GMimeMessage *message, int out_fd, GError **error)
{
  GMimeStream *out = g_mime_stream_fs_new (dup (out_fd));
  GMimeFormatOptions *format = g_mime_format_options_new ();
  gboolean ok;

  g_mime_format_options_set_newline_format (format, GMIME_NEWLINE_FORMAT_DOS);
  ok = g_mime_object_write_to_stream (GMIME_OBJECT (message), format, out)
           >= 0
       && g_mime_stream_flush (out) == 0;
  if (!ok)
    rm_error_set_errno (error, errno, RM_ERROR_IO,
                        "write the re-encoded message");
  g_mime_format_options_free (format);
  g_object_unref (out);
  return ok;
}

gboolean
rm_mime_limit_lines (int in_fd, int out_fd, GError **error)
{
  GMimeStream *in;
  GMimeParser *parser;
  GMimeMessage *message;
  gboolean ok;

  mime_init ();
  if (lseek (in_fd, 0, SEEK_SET) < 0)
    {
      rm_error_set_errno (error, errno, RM_ERROR_IO, "rewind the message");
      return FALSE;
    }
  in = g_mime_stream_fs_new (dup (in_fd));
  parser = g_mime_parser_new_with_stream (in);
  message = g_mime_parser_construct_message (parser, NULL);
  g_object_unref (parser);
  g_object_unref (in);
  if (message == NULL)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_DATA,
                   "the message cannot be parsed as MIME");
      return FALSE;
    }
  g_mime_message_foreach (message, limit_part, NULL);
  ok = write_message (message, out_fd, error);
  g_object_unref (message);
  return ok;
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
