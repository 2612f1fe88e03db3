/* Bounces; see bounce.h.
 *
 * The DSN is written by hand: every line of it is ours, so it is simple to
 * keep the spool format (CRLF, no line over 998 octets, 7-bit only). Text
 * from a server or an envelope passes through clean_text() first, and every
 * line that holds such text is laid out by append_folded(). The original's
 * header section is copied line by line with the same limits.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "bounce.h"
#include "errors.h"
#include "intake.h"

#define HEADER_CAP (64 * 1024) /* octets of the original's header kept */
#define REPLY_CAP 4096         /* octets of a reply shown */
#define SOFT_WIDTH 76          /* where lines are broken at spaces */
#define HARD_WIDTH RM_MAX_LINE /* where long words are cut */

typedef struct {
  const RmConfig *config;
  const RmEntry *entry;
  const RmBounceRcpt *rcpts;
  gsize n;
  RmBounceReason reason;
  const char *id;
  GDateTime *now;
} Dsn;

/* text as one line of printable ASCII: CR, LF and TAB become spaces, other
 * control and 8-bit octets \xHH; cut after REPLY_CAP octets. */
static char *
clean_text (const char *text)
{
  GString *out = g_string_new (NULL);
  gsize i;

  if (text == NULL)
    text = "";
  for (i = 0; i < REPLY_CAP && text[i] != '\0'; i++)
    {
      guchar c = (guchar) text[i];

      if (c == '\r' || c == '\n' || c == '\t')
        g_string_append_c (out, ' ');
      else if (c < 0x20 || c > 0x7e)
        g_string_append_printf (out, "\\x%02X", c);
      else
        g_string_append_c (out, (char) c);
    }
  if (text[i] != '\0')
    g_string_append (out, " ...");
  return g_string_free (out, FALSE);
}

static void
new_line (GString *out, const char *indent, gsize *line)
{
  g_string_append (out, "\r\n");
  *line = out->len;
  g_string_append (out, indent);
}

/* Appends first and the words of text, breaking lines at spaces so that
 * they stay within SOFT_WIDTH where the words allow; a word that does not
 * fit in hard octets is cut. Lines after the first start with indent (" "
 * folds a header field). Ends with CRLF; never writes a line of indent
 * alone. */
static void
append_folded (GString *out, const char *first, const char *indent,
               const char *text, gsize hard)
{
  gsize line = out->len;
  gboolean fresh = TRUE; /* nothing but the prefix on this line yet */
  const char *p = text;

  g_string_append (out, first);
  while (*p != '\0')
    {
      gsize len = strcspn (p, " ");
      gsize used = out->len - line;

      if (len == 0)
        p++;
      else if (used + (fresh ? 0 : 1) + len <= SOFT_WIDTH
               || (fresh && used + len <= hard))
        {
          if (!fresh)
            g_string_append_c (out, ' ');
          g_string_append_len (out, p, len);
          p += len;
          fresh = FALSE;
        }
      else if (!fresh)
        {
          new_line (out, indent, &line);
          fresh = TRUE;
        }
      else
        {
          g_assert (used < hard); /* prefixes are short */
          g_string_append_len (out, p, hard - used);
          p += hard - used;
          new_line (out, indent, &line);
        }
    }
  g_string_append (out, "\r\n");
}

/* "Name: value" folded; value is cleaned first. */
static void
append_field (GString *out, const char *name, const char *value)
{
  g_autofree char *first = g_strdup_printf ("%s: ", name);
  g_autofree char *clean = clean_text (value);

  append_folded (out, first, " ", clean, HARD_WIDTH);
}

static gboolean
is_smtp_reply (const char *reply)
{
  return reply != NULL && g_ascii_isdigit (reply[0])
         && g_ascii_isdigit (reply[1]) && g_ascii_isdigit (reply[2])
         && (reply[3] == '\0' || reply[3] == ' ' || reply[3] == '-');
}

/* Length of 1 to 3 digits at p, 0 if none. */
static gsize
digits (const char *p)
{
  gsize len = 0;

  while (len < 4 && g_ascii_isdigit (p[len]))
    len++;
  return len <= 3 ? len : 0;
}

/* The enhanced status code after the reply code ("550 5.1.1 ..."), whose
 * class agrees with the reply code; NULL if there is none. */
static char *
enhanced_code (const char *reply)
{
  const char *p;
  gsize len;

  if (!is_smtp_reply (reply) || reply[3] == '\0')
    return NULL;
  p = reply + 4;
  if (p[0] != reply[0] || strchr ("245", p[0]) == NULL || p[1] != '.')
    return NULL;
  len = 2;
  if (digits (p + len) == 0 || p[len + digits (p + len)] != '.')
    return NULL;
  len += digits (p + len) + 1;
  if (digits (p + len) == 0)
    return NULL;
  len += digits (p + len);
  if (p[len] != '\0' && !g_ascii_isspace (p[len]))
    return NULL;
  return g_strndup (p, len);
}

static char *
status_code (const char *reply, RmBounceReason reason)
{
  char *code;

  if (reason == RM_BOUNCE_EXPIRED)
    return g_strdup ("4.4.7");
  code = enhanced_code (reply);
  if (code != NULL)
    return code;
  return g_strdup (is_smtp_reply (reply) && reply[0] == '4' ? "4.0.0"
                                                            : "5.0.0");
}

static char *
format_time (gint64 when, GDateTime *fallback)
{
  g_autoptr (GDateTime) dt = g_date_time_new_from_unix_local (when);

  return rm_intake_format_date (dt != NULL ? dt : fallback);
}

static char *
reply_source (const Dsn *dsn, const RmBounceRcpt *r)
{
  const char *said = dsn->reason == RM_BOUNCE_EXPIRED ? "last error"
                                                      : "refused";
  g_autofree char *by = NULL;

  if (r->server != NULL && r->host != NULL)
    by = g_strdup_printf ("%s by server %s (%s):", said, r->server, r->host);
  else if (r->server != NULL || r->host != NULL)
    by = g_strdup_printf ("%s by %s:", said,
                          r->server != NULL ? r->server : r->host);
  else
    by = g_strdup_printf ("%s:", said);
  return clean_text (by);
}

static void
text_recipient (GString *out, const Dsn *dsn, const RmBounceRcpt *r)
{
  g_autofree char *addr = g_strdup_printf ("<%s>", r->address);
  g_autofree char *clean_addr = clean_text (addr);
  g_autofree char *source = reply_source (dsn, r);
  g_autofree char *reply = clean_text (r->reply);

  g_string_append (out, "\r\n");
  append_folded (out, "", "    ", clean_addr, SOFT_WIDTH);
  append_folded (out, "    ", "    ", source, SOFT_WIDTH);
  append_folded (out, "    ", "    ", *reply ? reply : "(no reply text)",
                 SOFT_WIDTH);
}

static char *
text_part (const Dsn *dsn)
{
  GString *out = g_string_new (NULL);
  g_autofree char *intro = g_strdup_printf (
      "This is the mail system at %s. %s", dsn->config->hostname,
      dsn->reason == RM_BOUNCE_EXPIRED
          ? "Your message could not be delivered to the recipients below "
            "within the time it may wait in the queue, so no further "
            "attempts will be made."
          : "Your message could not be delivered to the recipients below: "
            "the receiving mail server refused them for good.");
  g_autofree char *clean = clean_text (intro);

  append_folded (out, "", "", clean, SOFT_WIDTH);
  for (gsize i = 0; i < dsn->n; i++)
    text_recipient (out, dsn, &dsn->rcpts[i]);
  g_string_append (out, "\r\nA delivery report and the header section of "
                        "your message follow.\r\n");
  return g_string_free (out, FALSE);
}

static void
status_recipient (GString *out, const Dsn *dsn, const RmBounceRcpt *r)
{
  g_autofree char *addr = g_strdup_printf ("rfc822; %s", r->address);
  g_autofree char *status = status_code (r->reply, dsn->reason);
  g_autofree char *diag = g_strdup_printf (
      "%s; %s", is_smtp_reply (r->reply) ? "smtp" : "X-Rampmail",
      r->reply != NULL && *r->reply ? r->reply : "no reply text");
  g_autofree char *last = NULL;

  if (dsn->reason == RM_BOUNCE_EXPIRED && dsn->entry->last_attempt > 0)
    last = format_time (dsn->entry->last_attempt, dsn->now);
  else
    last = rm_intake_format_date (dsn->now);

  g_string_append (out, "\r\n");
  append_field (out, "Final-Recipient", addr);
  append_field (out, "Action", "failed");
  append_field (out, "Status", status);
  if (r->host != NULL)
    {
      g_autofree char *mta = g_strdup_printf ("dns; %s", r->host);

      append_field (out, "Remote-MTA", mta);
    }
  append_field (out, "Diagnostic-Code", diag);
  append_field (out, "Last-Attempt-Date", last);
}

static char *
status_part (const Dsn *dsn)
{
  GString *out = g_string_new (NULL);
  g_autofree char *mta = g_strdup_printf ("dns; %s", dsn->config->hostname);
  g_autofree char *arrival = format_time (dsn->entry->created, dsn->now);

  append_field (out, "Reporting-MTA", mta);
  append_field (out, "X-Rampmail-Queue-ID", dsn->entry->id);
  append_field (out, "Arrival-Date", arrival);
  for (gsize i = 0; i < dsn->n; i++)
    status_recipient (out, dsn, &dsn->rcpts[i]);
  return g_string_free (out, FALSE);
}

/* Reads at most HEADER_CAP octets of fd from offset 0. */
static GString *
read_head (int fd, const char *id, GError **error)
{
  GString *buf = g_string_sized_new (4096);
  char chunk[4096];

  while (buf->len < HEADER_CAP)
    {
      gsize want = MIN (sizeof chunk, HEADER_CAP - buf->len);
      ssize_t got = pread (fd, chunk, want, (off_t) buf->len);

      if (got < 0 && errno == EINTR)
        continue;
      if (got < 0)
        {
          rm_error_set_errno (error, errno, RM_ERROR_IO, "read message %s",
                              id);
          g_string_free (buf, TRUE);
          return NULL;
        }
      if (got == 0)
        break;
      g_string_append_len (buf, chunk, got);
      if (g_strstr_len (buf->str, buf->len, "\n\r\n") != NULL
          || g_str_has_prefix (buf->str, "\r\n"))
        break;
    }
  return buf;
}

/* Appends one header line, made 7-bit and cut to HARD_WIDTH. */
static void
append_header_line (GString *out, const char *line, gsize len)
{
  if (len > 0 && line[len - 1] == '\r')
    len--;
  len = MIN (len, HARD_WIDTH);
  for (gsize i = 0; i < len; i++)
    {
      guchar c = (guchar) line[i];

      g_string_append_c (
          out, (c == '\t' || (c >= 0x20 && c <= 0x7e)) ? (char) c : '?');
    }
  g_string_append (out, "\r\n");
}

/* The header section of the original, up to its first empty line (or the
 * last whole line within HEADER_CAP), kept to the spool format. */
static char *
headers_part (int fd, const char *id, GError **error)
{
  GString *buf = read_head (fd, id, error);
  GString *out;
  gsize start = 0;

  if (buf == NULL)
    return NULL;
  out = g_string_new (NULL);
  while (start < buf->len)
    {
      const char *nl = memchr (buf->str + start, '\n', buf->len - start);
      gsize len;

      if (nl == NULL)
        break; /* a partial last line */
      len = (gsize) (nl - (buf->str + start));
      if (len == 0 || (len == 1 && buf->str[start] == '\r'))
        break; /* the empty line */
      append_header_line (out, buf->str + start, len);
      start += len + 1;
    }
  g_string_free (buf, TRUE);
  g_string_append (out, "\r\n");
  return g_string_free (out, FALSE);
}

/* A boundary that none of the parts contains. */
static char *
choose_boundary (const Dsn *dsn, char **parts, gsize n)
{
  for (int tries = 0;; tries++)
    {
      g_autofree char *b = g_strdup_printf ("=_rampmail_%s_%08X", dsn->id,
                                            g_random_int ());
      gboolean used = FALSE;

      for (gsize i = 0; i < n && !used; i++)
        used = strstr (parts[i], b) != NULL;
      if (!used || tries >= 20)
        return g_steal_pointer (&b);
    }
}

static void
append_headers (GString *out, const Dsn *dsn, const char *boundary)
{
  g_autofree char *from = g_strdup_printf (
      "Mail Delivery System <MAILER-DAEMON@%s>", dsn->config->domain);
  g_autofree char *to = g_strdup_printf ("<%s>", dsn->entry->sender);
  g_autofree char *date = rm_intake_format_date (dsn->now);
  g_autofree char *msgid = g_strdup_printf ("<%s@%s>", dsn->id,
                                            dsn->config->hostname);
  g_autofree char *type = g_strdup_printf (
      "multipart/report; report-type=delivery-status; boundary=\"%s\"",
      boundary);

  append_field (out, "From", from);
  append_field (out, "To", to);
  append_field (out, "Subject",
                dsn->reason == RM_BOUNCE_EXPIRED
                    ? "Undelivered Mail Returned to Sender (expired)"
                    : "Undelivered Mail Returned to Sender");
  append_field (out, "Date", date);
  append_field (out, "Message-ID", msgid);
  append_field (out, "Auto-Submitted", "auto-replied");
  append_field (out, "MIME-Version", "1.0");
  append_field (out, "Content-Type", type);
}

/* The whole DSN, or NULL with error if the original cannot be read. */
static char *
build_dsn (const Dsn *dsn, int data_fd, GError **error)
{
  static const char *const types[] = {
    "text/plain; charset=us-ascii",
    "message/delivery-status",
    "text/rfc822-headers",
  };
  char *parts[3] = { NULL, NULL, NULL };
  g_autofree char *boundary = NULL;
  GString *out;

  parts[2] = headers_part (data_fd, dsn->entry->id, error);
  if (parts[2] == NULL)
    return NULL;
  parts[0] = text_part (dsn);
  parts[1] = status_part (dsn);
  boundary = choose_boundary (dsn, parts, 3);

  out = g_string_new (NULL);
  append_headers (out, dsn, boundary);
  g_string_append (out, "\r\nThis is a MIME-encapsulated message.\r\n");
  for (gsize i = 0; i < G_N_ELEMENTS (types); i++)
    {
      g_string_append_printf (out, "\r\n--%s\r\nContent-Type: %s\r\n\r\n",
                              boundary, types[i]);
      g_string_append (out, parts[i]);
    }
  g_string_append_printf (out, "\r\n--%s--\r\n", boundary);
  for (gsize i = 0; i < G_N_ELEMENTS (parts); i++)
    g_free (parts[i]);
  return g_string_free (out, FALSE);
}

static gboolean
write_all (int fd, const char *data, gsize len, const char *id,
           GError **error)
{
  while (len > 0)
    {
      ssize_t done = write (fd, data, len);

      if (done < 0 && errno == EINTR)
        continue;
      if (done < 0)
        {
          rm_error_set_errno (error, errno, RM_ERROR_IO, "write %s", id);
          return FALSE;
        }
      data += done;
      len -= (gsize) done;
    }
  return TRUE;
}

static gboolean
write_and_commit (RmQueue *queue, const Dsn *dsn, int fd, int data_fd,
                  GError **error)
{
  g_autofree char *text = build_dsn (dsn, data_fd, error);
  g_autoptr (RmEntry) bounce = NULL;

  if (text == NULL || !write_all (fd, text, strlen (text), dsn->id, error))
    return FALSE;
  bounce = rm_entry_new ();
  bounce->id = g_strdup (dsn->id);
  bounce->sender = g_strdup ("");
  g_ptr_array_add (bounce->rcpts, g_strdup (dsn->entry->sender));
  bounce->body = RM_BODY_7BIT;
  bounce->created = g_date_time_to_unix (dsn->now);
  return rm_queue_commit (queue, bounce, fd, error);
}

gboolean
rm_bounce_queue (RmQueue *queue, const RmConfig *config, const RmEntry *entry,
                 int data_fd, const RmBounceRcpt *rcpts, gsize n,
                 RmBounceReason reason, guint serial, char **bounce_id,
                 GError **error)
{
  g_autofree char *id = NULL;
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  GError *local = NULL;
  Dsn dsn = { config, entry, rcpts, n, reason, NULL, now };
  gboolean ok;
  int fd;

  if (bounce_id != NULL)
    *bounce_id = NULL;
  if (entry->sender == NULL || *entry->sender == '\0')
    return TRUE;
  if (rcpts == NULL || n == 0)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_SOFTWARE,
                   "bounce of %s without recipients", entry->id);
      return FALSE;
    }
  id = g_strdup_printf ("%s-B%u", entry->id, serial);
  fd = rm_queue_create_named (queue, id, &local);
  if (fd < 0 && local == NULL)
    return TRUE; /* queued before */
  if (fd < 0)
    {
      g_propagate_prefixed_error (error, local,
                                  "cannot bounce %s: ", entry->id);
      return FALSE;
    }
  dsn.id = id;
  ok = write_and_commit (queue, &dsn, fd, data_fd, error);
  close (fd);
  if (!ok)
    {
      rm_queue_discard (queue, id);
      g_prefix_error (error, "cannot bounce %s: ", entry->id);
      return FALSE;
    }
  if (bounce_id != NULL)
    *bounce_id = g_steal_pointer (&id);
  return TRUE;
}
