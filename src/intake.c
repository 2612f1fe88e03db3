/* Message intake: standard input to the spool file; see intake.h. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "address.h"
#include "errors.h"
#include "intake.h"
#include "mime.h"

#define CHUNK 65536
#define FOLD_WIDTH 78

/* ---- reading lines ------------------------------------------------------ */

typedef struct {
  int fd;
  guchar buf[CHUNK];
  gsize pos;
  gsize len;
  gboolean eof;
  guint nul_removed;
} Reader;

static gboolean
reader_fill (Reader *r, GError **error)
{
  ssize_t n;

  do
    n = read (r->fd, r->buf, sizeof r->buf);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    {
      rm_error_set_errno (error, errno, RM_ERROR_IO, "read standard input");
      return FALSE;
    }
  r->pos = 0;
  r->len = (gsize) n;
  r->eof = (n == 0);
  return TRUE;
}

/* Length of the run at p (at most n octets) before a CR, LF or NUL. */
static gsize
plain_run (const guchar *p, gsize n)
{
  gsize i = 0;

  while (i < n && p[i] != '\n' && p[i] != '\r' && p[i] != '\0')
    i++;
  return i;
}

/* Reads one line without its terminator (LF, CRLF or a bare CR) into line.
 * Returns 1 for a line, 0 at the end of input, -1 on error. */
static int
reader_line (Reader *r, GString *line, GError **error)
{
  gboolean any = FALSE;

  g_string_truncate (line, 0);
  for (;;)
    {
      gsize run;
      guchar c;

      if (r->pos == r->len && !reader_fill (r, error))
        return -1;
      if (r->eof)
        return any ? 1 : 0;
      any = TRUE;
      /* Copy the plain text up to the next CR, LF or NUL at once. */
      run = plain_run (r->buf + r->pos, r->len - r->pos);
      g_string_append_len (line, (const char *) r->buf + r->pos,
                           (gssize) run);
      r->pos += run;
      if (r->pos == r->len)
        continue;
      c = r->buf[r->pos++];
      if (c == '\n')
        return 1;
      if (c == '\r')
        {
          if (r->pos == r->len && !reader_fill (r, error))
            return -1;
          if (!r->eof && r->buf[r->pos] == '\n')
            r->pos++;
          return 1;
        }
      r->nul_removed++;
    }
}

/* ---- writing ------------------------------------------------------------ */

typedef struct {
  int fd;
  GString *buf;
  gint64 written;
} Writer;

static gboolean
writer_flush (Writer *w, GError **error)
{
  const char *p = w->buf->str;
  gsize left = w->buf->len;

  while (left > 0)
    {
      ssize_t n = write (w->fd, p, left);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          rm_error_set_errno (error, errno, RM_ERROR_IO,
                              "write the queue file");
          return FALSE;
        }
      p += n;
      left -= (gsize) n;
    }
  w->written += (gint64) w->buf->len;
  g_string_truncate (w->buf, 0);
  return TRUE;
}

static gboolean
writer_line (Writer *w, const char *text, gsize len, GError **error)
{
  g_string_append_len (w->buf, text, (gssize) len);
  g_string_append_len (w->buf, "\r\n", 2);
  if (w->buf->len >= CHUNK)
    return writer_flush (w, error);
  return TRUE;
}

/* ---- header fields ------------------------------------------------------ */

typedef struct {
  char *name;   /* as written */
  GString *raw; /* the field's lines joined by CRLF, no final CRLF */
} Field;

static void
field_free (gpointer data)
{
  Field *f = data;

  g_free (f->name);
  g_string_free (f->raw, TRUE);
  g_free (f);
}

/* Length of the field name if line starts a field ("Name:"), else 0. */
static gsize
field_name_length (const char *line)
{
  gsize i = 0;

  while (line[i] >= 0x21 && line[i] <= 0x7e && line[i] != ':')
    i++;
  return (i > 0 && line[i] == ':') ? i : 0;
}

static gboolean
is_mbox_from (const char *line)
{
  while (*line == '>')
    line++;
  return g_str_has_prefix (line, "From ");
}

/* The value of a field with the line breaks of folding removed and the
 * white space at both ends stripped. */
static char *
field_value (const Field *f)
{
  const char *colon = strchr (f->raw->str, ':');
  GString *out = g_string_new (NULL);

  for (const char *p = colon + 1; *p; p++)
    if (*p != '\r' && *p != '\n')
      g_string_append_c (out, *p);
  return g_strstrip (g_string_free (out, FALSE));
}

static gboolean
is_named (const Field *f, const char *name)
{
  return g_ascii_strcasecmp (f->name, name) == 0;
}

static gboolean
has_eight_bit (const char *text)
{
  for (const guchar *p = (const guchar *) text; *p; p++)
    if (*p > 127)
      return TRUE;
  return FALSE;
}

static gboolean
has_long_line (const GString *raw)
{
  const char *line = raw->str;

  for (;;)
    {
      const char *end = strstr (line, "\r\n");
      gsize len = end ? (gsize) (end - line) : strlen (line);

      if (len > RM_MAX_LINE)
        return TRUE;
      if (end == NULL)
        return FALSE;
      line = end + 2;
    }
}

char *
rm_intake_fold (const char *field)
{
  GString *out = g_string_new (NULL);
  gsize line_len = 0;
  guint words = 0; /* on the current line */
  guint keep = 2;  /* the first line keeps the name and one word */
  const char *p = field;

  while (*p)
    {
      /* One word: the white space before it and the text up to the next
       * white space. */
      const char *start = p;
      gsize len;

      while (*p == ' ' || *p == '\t')
        p++;
      while (*p && *p != ' ' && *p != '\t')
        p++;
      len = (gsize) (p - start);
      if (words >= keep && line_len + len > FOLD_WIDTH)
        {
          g_string_append (out, "\r\n");
          line_len = 0;
          words = 0;
          keep = 1;
        }
      g_string_append_len (out, start, (gssize) len);
      line_len += len;
      words++;
    }
  return g_string_free (out, FALSE);
}

/* ---- the header section ------------------------------------------------- */

typedef struct {
  const RmIntakeParams *params;
  RmIntakeResult *result;
  GPtrArray *fields; /* Field *, in order */
  gsize size;
} Headers;

static gboolean
headers_add_line (Headers *h, const GString *line, gboolean continuation,
                  GError **error)
{
  h->size += line->len + 2;
  if (h->size > RM_INTAKE_MAX_HEADER)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_DATA,
                   "the header section is longer than %d octets",
                   RM_INTAKE_MAX_HEADER);
      return FALSE;
    }
  if (continuation)
    {
      Field *last = h->fields->pdata[h->fields->len - 1];

      g_string_append (last->raw, "\r\n");
      g_string_append_len (last->raw, line->str, (gssize) line->len);
    }
  else
    {
      Field *f = g_new0 (Field, 1);

      f->name = g_strndup (line->str, field_name_length (line->str));
      f->raw = g_string_new_len (line->str, (gssize) line->len);
      g_ptr_array_add (h->fields, f);
    }
  return TRUE;
}

/* Collects the recipient fields and drops the blind ones. */
static void
headers_take_recipients (Headers *h)
{
  static const char *const visible[] = { "To", "Cc" };
  static const char *const resent[] = { "Resent-To", "Resent-Cc" };

  for (guint i = 0; i < h->fields->len;)
    {
      Field *f = h->fields->pdata[i];
      gboolean blind = is_named (f, "Bcc") || is_named (f, "Resent-Bcc");

      for (gsize k = 0; k < G_N_ELEMENTS (visible); k++)
        if (is_named (f, visible[k]) || is_named (f, "Bcc"))
          {
            g_ptr_array_add (h->result->to, field_value (f));
            break;
          }
      for (gsize k = 0; k < G_N_ELEMENTS (resent); k++)
        if (is_named (f, resent[k]) || is_named (f, "Resent-Bcc"))
          {
            g_ptr_array_add (h->result->resent, field_value (f));
            break;
          }
      if (blind)
        g_ptr_array_remove_index (h->fields, i);
      else
        i++;
    }
}

/* Merges a repeated To or Cc field into the first one. */
static void
headers_merge_repeats (Headers *h)
{
  static const char *const names[] = { "To", "Cc" };

  for (gsize k = 0; k < G_N_ELEMENTS (names); k++)
    {
      Field *first = NULL;

      for (guint i = 0; i < h->fields->len;)
        {
          Field *f = h->fields->pdata[i];
          g_autofree char *value = NULL;

          if (!is_named (f, names[k]))
            {
              i++;
              continue;
            }
          if (first == NULL)
            {
              first = f;
              i++;
              continue;
            }
          value = field_value (f);
          g_string_append_printf (first->raw, ",\r\n %s", value);
          g_ptr_array_remove_index (h->fields, i);
        }
    }
}

static gboolean
headers_have (const Headers *h, const char *name)
{
  for (guint i = 0; i < h->fields->len; i++)
    if (is_named (h->fields->pdata[i], name))
      return TRUE;
  return FALSE;
}

static void
headers_append (Headers *h, const char *name, const char *value)
{
  Field *f = g_new0 (Field, 1);

  f->name = g_strdup (name);
  f->raw = g_string_new (NULL);
  g_string_printf (f->raw, "%s: %s", name, value);
  g_ptr_array_add (h->fields, f);
}

static void
headers_add_missing (Headers *h)
{
  const RmIntakeParams *p = h->params;

  if (!headers_have (h, "From") && p->default_from != NULL)
    headers_append (h, "From", p->default_from);
  if (!headers_have (h, "Date"))
    {
      g_autoptr (GDateTime) now = p->now ? g_date_time_ref (p->now)
                                         : g_date_time_new_now_local ();
      g_autofree char *date = rm_intake_format_date (now);

      headers_append (h, "Date", date);
    }
  if (!headers_have (h, "Message-ID") && p->message_id != NULL)
    headers_append (h, "Message-ID", p->message_id);
}

/* Fields that hold address lists, where a bare local name ("root")
 * gets the domain, as it does in the envelope. */
static const char *const address_fields[] = {
  "From",        "Sender",        "Reply-To",  "To",       "Cc",
  "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc"
};

/* Qualifies bare local names in address fields, unless a DKIM signature
 * covers the header as it is. */
static void
headers_qualify (Headers *h)
{
  const char *domain = h->params->domain;

  if (domain == NULL || *domain == '\0' || h->result->dkim)
    return;
  for (guint i = 0; i < h->fields->len; i++)
    {
      Field *f = h->fields->pdata[i];
      g_autofree char *value = NULL;
      g_autofree char *qualified = NULL;
      g_autofree char *flat = NULL;
      g_autofree char *folded = NULL;
      gsize k = 0;

      while (k < G_N_ELEMENTS (address_fields)
             && !is_named (f, address_fields[k]))
        k++;
      if (k == G_N_ELEMENTS (address_fields))
        continue;
      value = field_value (f);
      qualified = rm_address_qualify_list (value, domain);
      if (qualified == NULL)
        continue;
      flat = g_strdup_printf ("%s: %s", f->name, qualified);
      folded = rm_intake_fold (flat);
      g_string_assign (f->raw, folded);
      h->result->fields_qualified++;
    }
}

/* Downgrades 8-bit fields and folds over-long ones; fails only when the
 * MIME module cannot be loaded. */
static gboolean
headers_make_sendable (Headers *h, GError **error)
{
  for (guint i = 0; i < h->fields->len; i++)
    {
      Field *f = h->fields->pdata[i];
      g_autofree char *flat = NULL;

      if (has_eight_bit (f->raw->str))
        {
          g_autofree char *value = field_value (f);

          flat = rm_mime_encode_field (f->name, value, error);
          if (flat == NULL)
            return FALSE;
          h->result->fields_encoded++;
        }
      else if (has_long_line (f->raw))
        {
          g_autofree char *value = field_value (f);

          flat = g_strdup_printf ("%s: %s", f->name, value);
          h->result->fields_folded++;
        }
      if (flat != NULL)
        {
          g_autofree char *folded = rm_intake_fold (flat);

          g_string_assign (f->raw, folded);
        }
    }
  return TRUE;
}

static gboolean
headers_write (Headers *h, Writer *w, GError **error)
{
  h->result->dkim = headers_have (h, "DKIM-Signature");
  headers_take_recipients (h);
  headers_merge_repeats (h);
  headers_qualify (h);
  headers_add_missing (h);
  for (guint i = 0; i < h->fields->len && h->result->from == NULL; i++)
    if (is_named (h->fields->pdata[i], "From"))
      h->result->from = field_value (h->fields->pdata[i]);
  if (!headers_make_sendable (h, error))
    return FALSE;
  if (h->params->received != NULL)
    {
      g_autofree char *trace = g_strdup_printf ("Received: %s",
                                                h->params->received);

      if (!writer_line (w, trace, strlen (trace), error))
        return FALSE;
    }
  for (guint i = 0; i < h->fields->len; i++)
    {
      Field *f = h->fields->pdata[i];

      if (!writer_line (w, f->raw->str, f->raw->len, error))
        return FALSE;
    }
  return writer_line (w, "", 0, error);
}

/* ---- the whole message -------------------------------------------------- */

typedef enum { IN_START, IN_HEADERS, IN_BODY } Phase;

static void
note_body_line (RmIntakeResult *result, const GString *line)
{
  if (line->len > RM_MAX_LINE)
    result->long_lines = TRUE;
  if (!result->eight_bit && has_eight_bit (line->str))
    result->eight_bit = TRUE;
}

/* Handles one input line; *done is set when a lone dot ends the input. */
static gboolean
take_line (Phase *phase, Headers *h, Writer *w, const GString *line,
           gboolean *done, GError **error)
{
  if (!h->params->ignore_dots && line->len == 1 && line->str[0] == '.')
    {
      *done = TRUE;
      return TRUE;
    }
  if (*phase == IN_START && is_mbox_from (line->str))
    return TRUE;
  if (*phase != IN_BODY)
    {
      gboolean cont = (line->str[0] == ' ' || line->str[0] == '\t')
                      && h->fields->len > 0;

      if (cont || field_name_length (line->str) > 0)
        {
          *phase = IN_HEADERS;
          return headers_add_line (h, line, cont, error);
        }
      *phase = IN_BODY;
      if (!headers_write (h, w, error))
        return FALSE;
      if (line->len == 0)
        return TRUE;
    }
  note_body_line (h->result, line);
  return writer_line (w, line->str, line->len, error);
}

gboolean
rm_intake_stream (int in_fd, int out_fd, const RmIntakeParams *params,
                  RmIntakeResult *result, GError **error)
{
  g_autofree Reader *reader = g_new0 (Reader, 1);
  g_autoptr (GString) line = g_string_sized_new (1024);
  g_autoptr (GPtrArray) fields = g_ptr_array_new_with_free_func (field_free);
  Writer w = { out_fd, g_string_sized_new (CHUNK + 1024), 0 };
  Headers h = { params, result, fields, 0 };
  Phase phase = IN_START;
  gboolean done = FALSE;
  gboolean ok = TRUE;
  int rc = 0;

  memset (result, 0, sizeof *result);
  result->to = g_ptr_array_new_with_free_func (g_free);
  result->resent = g_ptr_array_new_with_free_func (g_free);
  reader->fd = in_fd;

  while (ok && !done && (rc = reader_line (reader, line, error)) > 0)
    ok = take_line (&phase, &h, &w, line, &done, error);
  if (ok && !done && rc < 0)
    ok = FALSE;
  if (ok && phase != IN_BODY)
    ok = headers_write (&h, &w, error);
  if (ok)
    ok = writer_flush (&w, error);

  result->nul_removed = reader->nul_removed;
  result->size = w.written;
  g_string_free (w.buf, TRUE);
  return ok;
}

void
rm_intake_result_clear (RmIntakeResult *result)
{
  g_clear_pointer (&result->to, g_ptr_array_unref);
  g_clear_pointer (&result->resent, g_ptr_array_unref);
  g_clear_pointer (&result->from, g_free);
}

char *
rm_intake_format_date (GDateTime *when)
{
  static const char *const days[] = { "Mon", "Tue", "Wed", "Thu",
                                      "Fri", "Sat", "Sun" };
  static const char *const months[] = { "Jan", "Feb", "Mar", "Apr",
                                        "May", "Jun", "Jul", "Aug",
                                        "Sep", "Oct", "Nov", "Dec" };
  g_autofree char *zone = g_date_time_format (when, "%z");

  return g_strdup_printf (
      "%s, %02d %s %04d %02d:%02d:%02d %s",
      days[g_date_time_get_day_of_week (when) - 1],
      g_date_time_get_day_of_month (when),
      months[g_date_time_get_month (when) - 1], g_date_time_get_year (when),
      g_date_time_get_hour (when), g_date_time_get_minute (when),
      g_date_time_get_second (when), zone);
}
