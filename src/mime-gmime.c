/* The MIME module: the work of mime.h done with GMime (see mime-module.h).
 * Built as the module plugins/mime.la; unit tests and fuzz targets link it
 * directly. */
#include "config.h"

#include <errno.h>
#include <unistd.h>

#include <gmime/gmime.h>

#include "errors.h"
#include "mime-module.h"

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

static char *
encode_field (const char *name, const char *value)
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

/* Gives a part that does not meet the constraint (user_data: a
 * GMimeEncodingConstraint) the encoding that does. */
static void
limit_part (GMimeObject *parent, GMimeObject *object, gpointer user_data)
{
  GMimeEncodingConstraint constraint = (GMimeEncodingConstraint)
      GPOINTER_TO_INT (user_data);
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
  best = g_mime_part_get_best_content_encoding (part, constraint);
  /* Text stays readable as quoted-printable, however much of it is 8-bit. */
  if (best == GMIME_CONTENT_ENCODING_BASE64
      && g_mime_content_type_is_type (g_mime_object_get_content_type (object),
                                      "text", "*"))
    best = GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE;
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

/* TRUE if the content of part is UTF-8. */
static gboolean
content_is_utf8 (GMimePart *part)
{
  GMimeDataWrapper *content = g_mime_part_get_content (part);
  GMimeStream *mem;
  GByteArray *bytes;
  gboolean utf8;

  if (content == NULL)
    return TRUE;
  mem = g_mime_stream_mem_new ();
  g_mime_data_wrapper_write_to_stream (content, mem);
  bytes = g_mime_stream_mem_get_byte_array (GMIME_STREAM_MEM (mem));
  utf8 = g_utf8_validate ((const char *) bytes->data, (gssize) bytes->len,
                          NULL);
  g_object_unref (mem);
  return utf8;
}

/* A message without MIME headers gets them before its body is re-encoded
 * (a transfer encoding means nothing without MIME-Version), with the
 * charset its text is in: UTF-8, or unknown-8bit (RFC 1428). */
static void
declare_mime (GMimeMessage *message)
{
  GMimeObject *body = g_mime_message_get_mime_part (message);

  if (g_mime_object_get_header (GMIME_OBJECT (message), "MIME-Version")
      == NULL)
    g_mime_object_set_header (GMIME_OBJECT (message), "MIME-Version", "1.0",
                              NULL);
  if (body != NULL && GMIME_IS_PART (body)
      && g_mime_object_get_header (body, "Content-Type") == NULL)
    g_mime_object_set_content_type_parameter (
        body, "charset",
        content_is_utf8 (GMIME_PART (body)) ? "utf-8" : "unknown-8bit");
}

static gboolean
recode (int in_fd, int out_fd, GMimeEncodingConstraint constraint,
        GError **error)
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
  if (constraint == GMIME_ENCODING_CONSTRAINT_7BIT)
    declare_mime (message);
  g_mime_message_foreach (message, limit_part, GINT_TO_POINTER (constraint));
  ok = write_message (message, out_fd, error);
  g_object_unref (message);
  return ok;
}

static gboolean
limit_lines (int in_fd, int out_fd, GError **error)
{
  return recode (in_fd, out_fd, GMIME_ENCODING_CONSTRAINT_8BIT, error);
}

static gboolean
to_7bit (int in_fd, int out_fd, GError **error)
{
  return recode (in_fd, out_fd, GMIME_ENCODING_CONSTRAINT_7BIT, error);
}

const RmMimeModule rampmail_mime_module = {
  .version = RM_MIME_MODULE_VERSION,
  .size = sizeof (RmMimeModule),
  .encode_field = encode_field,
  .limit_lines = limit_lines,
  .to_7bit = to_7bit,
};
