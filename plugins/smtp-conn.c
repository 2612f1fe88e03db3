/* SMTP over a socket of our own, for the smtp transport.
 *
 * verify() cannot use libESMTP, which never connects for a session
 * without a message, so it speaks SMTP here: connect, TLS (implicit, or
 * STARTTLS), greeting, EHLO, AUTH (PLAIN or LOGIN), QUIT, with the TLS
 * rules of smtp-tls.c and the AUTH rules of send(): the password goes
 * only over TLS or to a loopback address. send() uses the connect step
 * for implicit TLS.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>
#include <libesmtp.h>

#include "smtp.h"

#define RM_SMTP_REPLY_LINES 64
#define RM_SMTP_REPLY_MAX 1024

/* ---- reply text --------------------------------------------------------- */

gboolean
rm_smtp_parse_line (const char *line, int *code, gboolean *last,
                    const char **text)
{
  if (!g_ascii_isdigit (line[0]) || !g_ascii_isdigit (line[1])
      || !g_ascii_isdigit (line[2])
      || (line[3] != ' ' && line[3] != '-' && line[3] != '\0'))
    return FALSE;
  *code = (int) g_ascii_strtoll (line, NULL, 10);
  *last = line[3] != '-';
  *text = line[3] == '\0' ? "" : line + 4;
  return TRUE;
}

/* Length of an enhanced status code ("5.7.8") at the start of text. */
static size_t
rm_smtp_enhanced_len (const char *text)
{
  const char *p = text;

  for (int part = 0; part < 3; part++)
    {
      const char *start = p;

      while (g_ascii_isdigit (*p))
        p++;
      if (p == start || p - start > 3 || (part < 2 && *p++ != '.'))
        return 0;
    }
  return (*p == ' ' || *p == '\0') ? (size_t) (p - text) : 0;
}

void
rm_smtp_reply_append (GString *s, const char *text)
{
  size_t enh = rm_smtp_enhanced_len (text);

  if (s->len > 0 && enh > 0 && strncmp (s->str, text, enh) == 0
      && (s->str[enh] == ' ' || s->str[enh] == '\0'))
    text += enh;
  while (*text == ' ')
    text++;
  if (*text != '\0' && s->len > 0)
    g_string_append_c (s, ' ');
  for (; *text != '\0' && s->len < RM_SMTP_REPLY_MAX; text++)
    if ((unsigned char) *text >= 0x20 && *text != 0x7f)
      g_string_append_c (s, *text);
}

/* A whole reply as one line, "CODE text". */
static char *
rm_smtp_reply_string (GPtrArray *lines)
{
  g_autoptr (GString) s = g_string_new (NULL);
  const char *text;
  gboolean last;
  int code = 0;

  for (guint i = 0; i < lines->len; i++)
    if (rm_smtp_parse_line (g_ptr_array_index (lines, i), &code, &last,
                            &text))
      rm_smtp_reply_append (s, text);
  return g_strdup_printf ("%03d %s", code, s->str);
}

/* The first line of a reply, safe to print. */
static char *
rm_smtp_first_line (GPtrArray *lines)
{
  GString *s = g_string_new (NULL);

  if (lines->len > 0)
    for (const char *p = g_ptr_array_index (lines, 0); *p != '\0'; p++)
      g_string_append_c (s, ((unsigned char) *p < 0x20 || *p == 0x7f) ? '?'
                                                                      : *p);
  return g_string_free (s, FALSE);
}

static void
rm_smtp_add_hint (GError **error, const char *hint)
{
  char *message;

  if (error == NULL || *error == NULL || hint == NULL)
    return;
  message = g_strdup_printf ("%s; hint: %s", (*error)->message, hint);
  g_free ((*error)->message);
  (*error)->message = message;
}

/* ---- connecting ---------------------------------------------------------- */

static int
rm_smtp_connect_one (const struct addrinfo *ai, int timeout_ms)
{
  int fd = socket (ai->ai_family,
                   ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                   ai->ai_protocol);
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  int soerr = 0;
  socklen_t len = sizeof soerr;

  if (fd < 0)
    return -1;
  if (connect (fd, ai->ai_addr, ai->ai_addrlen) == 0)
    return fd;
  if (errno == EINPROGRESS && rm_smtp_poll_until (fd, POLLOUT, deadline)
      && getsockopt (fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0)
    {
      if (soerr == 0)
        return fd;
      errno = soerr;
    }
  soerr = errno;
  close (fd);
  errno = soerr;
  return -1;
}

static char *
rm_smtp_address_string (const struct addrinfo *ai)
{
  char host[NI_MAXHOST];

  if (getnameinfo (ai->ai_addr, ai->ai_addrlen, host, sizeof host, NULL, 0,
                   NI_NUMERICHOST)
      != 0)
    return g_strdup ("?");
  return g_strdup (host);
}

gboolean
rm_smtp_conn_open (RmSmtpConn *c, const RmServer *srv, GString *report,
                   GError **error)
{
  struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
  struct addrinfo *res = NULL;
  g_autofree char *port = g_strdup_printf ("%u", srv->port);
  unsigned seconds = rm_smtp_seconds (srv->connect_timeout,
                                      RM_SMTP_DEFAULT_CONNECT_TIMEOUT);
  int rc = getaddrinfo (srv->host, port, &hints, &res);
  int last = 0;

  if (rc != 0)
    {
      g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_CONNECT,
                   "resolve %s: %s", srv->host, gai_strerror (rc));
      return FALSE;
    }
  for (struct addrinfo *ai = res; ai != NULL && c->fd < 0; ai = ai->ai_next)
    {
      g_autofree char *addr = rm_smtp_address_string (ai);

      c->fd = rm_smtp_connect_one (ai, (int) seconds * 1000);
      last = errno;
      if (c->fd >= 0)
        g_string_append_printf (report, "connected to %s:%u (%s)\n",
                                srv->host, srv->port, addr);
      else
        g_string_append_printf (report, "connect to %s:%u (%s): %s\n",
                                srv->host, srv->port, addr,
                                g_strerror (last));
    }
  freeaddrinfo (res);
  if (c->fd < 0)
    g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_CONNECT,
                 "connect to %s:%u: %s", srv->host, srv->port,
                 g_strerror (last));
  return c->fd >= 0;
}

static void
rm_smtp_conn_close (RmSmtpConn *c)
{
  if (c->ssl != NULL && !c->broken)
    SSL_shutdown (c->ssl);
  SSL_free (c->ssl);
  c->ssl = NULL;
  if (c->fd >= 0)
    close (c->fd);
  c->fd = -1;
}

static gboolean
rm_smtp_conn_is_loopback (const RmSmtpConn *c)
{
  struct sockaddr_storage peer;
  socklen_t len = sizeof peer;

  return getpeername (c->fd, (struct sockaddr *) &peer, &len) == 0
         && rm_smtp_is_loopback ((struct sockaddr *) &peer);
}

/* ---- lines and replies -------------------------------------------------- */

static gssize
rm_smtp_conn_read (RmSmtpConn *c)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) c->timeout_ms * 1000;
  char *at = c->buf + c->len;
  size_t room = sizeof c->buf - c->len;
  gssize n;

  if (c->ssl != NULL)
    return rm_smtp_tls_read (c->ssl, c->fd, at, room, c->timeout_ms);
  do
    n = rm_smtp_poll_until (c->fd, POLLIN, deadline) ? read (c->fd, at, room)
                                                     : -1;
  while (n < 0 && (errno == EINTR || errno == EAGAIN));
  return n;
}

static char *
rm_smtp_conn_line (RmSmtpConn *c, GError **error)
{
  char *nl;
  char *line;

  while ((nl = memchr (c->buf, '\n', c->len)) == NULL)
    {
      gssize n = c->len == sizeof c->buf ? -2 : rm_smtp_conn_read (c);

      if (n > 0)
        {
          c->len += (size_t) n;
          continue;
        }
      c->broken = TRUE;
      if (n == -2)
        g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL,
                     "reply line longer than %d octets", RM_SMTP_LINE_MAX);
      else if (n < 0 && errno == ETIMEDOUT)
        g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL,
                     "no reply within %d s", c->timeout_ms / 1000);
      else
        g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL,
                     "no reply: %s",
                     n == 0 ? "connection closed" : g_strerror (errno));
      return NULL;
    }
  line = g_strndup (c->buf, nl - c->buf);
  c->len -= (size_t) (nl + 1 - c->buf);
  memmove (c->buf, nl + 1, c->len);
  return g_strchomp (line);
}

/* Reads one reply; returns its code (0 on error) and its lines. */
static int
rm_smtp_conn_reply (RmSmtpConn *c, GPtrArray *lines, GError **error)
{
  for (int i = 0; i < RM_SMTP_REPLY_LINES; i++)
    {
      char *line = rm_smtp_conn_line (c, error);
      const char *text;
      gboolean last;
      int code;

      if (line == NULL)
        return 0;
      g_ptr_array_add (lines, line);
      if (!rm_smtp_parse_line (line, &code, &last, &text))
        break;
      if (last)
        return code;
    }
  c->broken = TRUE;
  g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL,
               "malformed reply");
  return 0;
}

static gboolean
rm_smtp_conn_write (RmSmtpConn *c, const char *data, size_t len)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) c->timeout_ms * 1000;
  size_t done = 0;

  if (c->ssl != NULL)
    return rm_smtp_tls_write (c->ssl, c->fd, data, len, c->timeout_ms);
  while (done < len)
    {
      ssize_t n = send (c->fd, data + done, len - done, MSG_NOSIGNAL);

      if (n >= 0)
        done += (size_t) n;
      else if (errno != EINTR
               && (errno != EAGAIN
                   || !rm_smtp_poll_until (c->fd, POLLOUT, deadline)))
        return FALSE;
    }
  return TRUE;
}

static gboolean
rm_smtp_conn_send (RmSmtpConn *c, const char *command, GError **error)
{
  if (rm_smtp_conn_write (c, command, strlen (command)))
    return TRUE;
  c->broken = TRUE;
  g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL, "send: %s",
               g_strerror (errno));
  return FALSE;
}

/* Sends command (if any) and reads the reply into lines. */
static int
rm_smtp_conn_ask (RmSmtpConn *c, const char *command, GPtrArray *lines,
                  GError **error)
{
  g_ptr_array_set_size (lines, 0);
  if (command != NULL && !rm_smtp_conn_send (c, command, error))
    return 0;
  return rm_smtp_conn_reply (c, lines, error);
}

/* ---- EHLO --------------------------------------------------------------- */

/* The parameters of an EHLO keyword ("" when none), or NULL when the
 * reply does not offer it. */
static const char *
rm_smtp_ehlo_find (GPtrArray *ehlo, const char *keyword)
{
  size_t n = strlen (keyword);

  for (guint i = 1; i < ehlo->len; i++)
    {
      const char *text = (const char *) g_ptr_array_index (ehlo, i) + 4;

      if (strlen (text) < n || g_ascii_strncasecmp (text, keyword, n) != 0)
        continue;
      if (text[n] == '\0')
        return "";
      if (text[n] == ' ' || text[n] == '=')
        return text + n + 1;
    }
  return NULL;
}

static gboolean
rm_smtp_has_word (const char *list, const char *word)
{
  g_auto (GStrv) words = g_strsplit (list, " ", -1);

  for (char **w = words; *w != NULL; w++)
    if (g_ascii_strcasecmp (*w, word) == 0)
      return TRUE;
  return FALSE;
}

static void
rm_smtp_report_extensions (GString *report, GPtrArray *ehlo)
{
  g_string_append (report, "extensions:");
  for (guint i = 1; i < ehlo->len; i++)
    {
      const char *p = (const char *) g_ptr_array_index (ehlo, i) + 4;

      g_string_append (report, i > 1 ? ", " : " ");
      for (; *p != '\0'; p++)
        g_string_append_c (
            report, ((unsigned char) *p < 0x20 || *p == 0x7f) ? '?' : *p);
    }
  if (ehlo->len < 2)
    g_string_append (report, " none");
  g_string_append_c (report, '\n');
}

/* EHLO, or HELO if refused; ehlo gets the EHLO reply (empty after HELO). */
static gboolean
rm_smtp_hello (RmSmtpConn *c, const RmServer *srv, GPtrArray *ehlo,
               GString *report, GError **error)
{
  g_autoptr (GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *command = g_strdup_printf ("EHLO %s\r\n", srv->helo);
  g_autofree char *first = NULL;
  int code = rm_smtp_conn_ask (c, command, ehlo, error);

  if (code / 100 == 2)
    return TRUE;
  if (code == 0)
    return FALSE;
  first = rm_smtp_first_line (ehlo);
  g_string_append_printf (report, "EHLO refused: %s\n", first);
  g_ptr_array_set_size (ehlo, 0);

  g_free (command);
  command = g_strdup_printf ("HELO %s\r\n", srv->helo);
  code = rm_smtp_conn_ask (c, command, lines, error);
  if (code == 0)
    return FALSE;
  g_free (first);
  first = rm_smtp_first_line (lines);
  g_string_append_printf (report, "HELO: %s\n", first);
  if (code / 100 != 2)
    g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL,
                 "EHLO and HELO refused: %s", first);
  return code / 100 == 2;
}

static gboolean
rm_smtp_greet (RmSmtpConn *c, const RmServer *srv, GPtrArray *ehlo,
               GString *report, GError **error)
{
  g_autoptr (GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *first = NULL;
  int code = rm_smtp_conn_ask (c, NULL, lines, error);

  if (code == 0)
    return FALSE;
  first = rm_smtp_first_line (lines);
  g_string_append_printf (report, "greeting: %s\n", first);
  if (code != 220)
    {
      g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL,
                   "greeting refused: %s", first);
      return FALSE;
    }
  return rm_smtp_hello (c, srv, ehlo, report, error);
}

/* ---- TLS ---------------------------------------------------------------- */

static gboolean
rm_smtp_conn_tls (RmSmtpConn *c, SSL_CTX *ctx, GString *report,
                  GError **error)
{
  RmSmtpTls *tls = SSL_CTX_get_app_data (ctx);
  g_autoptr (GError) local = NULL;
  g_autofree char *hint = NULL;

  c->ssl = rm_smtp_tls_connect (ctx, c->fd, c->timeout_ms, &local);
  rm_smtp_tls_report (tls, c->ssl, report);
  if (c->ssl != NULL)
    return TRUE;
  c->broken = TRUE;
  hint = rm_smtp_tls_hint (tls);
  g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_TLS, "TLS: %s",
               local->message);
  rm_smtp_add_hint (error, hint);
  return FALSE;
}

static gboolean
rm_smtp_conn_starttls (RmSmtpConn *c, const RmServer *srv, SSL_CTX *ctx,
                       GPtrArray *ehlo, GString *report, GError **error)
{
  g_autoptr (GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *first = NULL;
  int code;

  if (rm_smtp_ehlo_find (ehlo, "STARTTLS") == NULL)
    {
      g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_TLS,
                   "server does not offer STARTTLS");
      rm_smtp_add_hint (error, "the port may want implicit TLS "
                               "(tls = implicit, usually port 465)");
      return FALSE;
    }
  code = rm_smtp_conn_ask (c, "STARTTLS\r\n", lines, error);
  if (code == 0)
    return FALSE;
  first = rm_smtp_first_line (lines);
  g_string_append_printf (report, "STARTTLS: %s\n", first);
  if (code != 220)
    {
      g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_TLS,
                   "server refused STARTTLS: %s", first);
      return FALSE;
    }
  if (c->len > 0)
    {
      c->broken = TRUE;
      g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_TLS,
                   "server sent data after its STARTTLS reply, before "
                   "TLS; refusing to go on");
      return FALSE;
    }
  if (!rm_smtp_conn_tls (c, ctx, report, error))
    return FALSE;
  g_ptr_array_set_size (ehlo, 0);
  return rm_smtp_hello (c, srv, ehlo, report, error);
}

/* ---- AUTH --------------------------------------------------------------- */

static void
rm_smtp_wipe_free (char *secret)
{
  if (secret == NULL)
    return;
  explicit_bzero (secret, strlen (secret));
  g_free (secret);
}

/* Sends base64(data) and a CRLF, as a command or a SASL response. */
static int
rm_smtp_ask_secret (RmSmtpConn *c, const char *prefix, const guchar *data,
                    size_t len, GPtrArray *lines, GError **error)
{
  char *b64 = g_base64_encode (data, len);
  char *command = g_strconcat (prefix, b64, "\r\n", NULL);
  int code = rm_smtp_conn_ask (c, command, lines, error);

  rm_smtp_wipe_free (command);
  rm_smtp_wipe_free (b64);
  return code;
}

static int
rm_smtp_auth_plain (RmSmtpConn *c, const RmServer *srv, GPtrArray *lines,
                    GError **error)
{
  const char *password = srv->password != NULL ? srv->password : "";
  size_t ulen = strlen (srv->user);
  size_t plen = strlen (password);
  size_t len = ulen + plen + 2;
  guchar *raw = g_malloc (len);
  int code;

  raw[0] = '\0';
  memcpy (raw + 1, srv->user, ulen);
  raw[ulen + 1] = '\0';
  memcpy (raw + ulen + 2, password, plen);
  code = rm_smtp_ask_secret (c, "AUTH PLAIN ", raw, len, lines, error);
  explicit_bzero (raw, len);
  g_free (raw);
  return code;
}

static int
rm_smtp_auth_login (RmSmtpConn *c, const RmServer *srv, GPtrArray *lines,
                    GError **error)
{
  const char *password = srv->password != NULL ? srv->password : "";
  int code = rm_smtp_conn_ask (c, "AUTH LOGIN\r\n", lines, error);

  if (code == 334)
    code = rm_smtp_ask_secret (c, "", (const guchar *) srv->user,
                               strlen (srv->user), lines, error);
  if (code == 334)
    code = rm_smtp_ask_secret (c, "", (const guchar *) password,
                               strlen (password), lines, error);
  return code;
}

static const char *
rm_smtp_auth_hint (int code, const char *reply)
{
  const char *text = strlen (reply) > 4 ? reply + 4 : "";

  if (code == 534 || g_str_has_prefix (text, "5.7.9"))
    return "create an app password (needs 2-Step Verification) and put it "
           "in the password file";
  if (code == 535)
    return "check user and the password; Gmail takes an app password, "
           "not the account's password";
  if (code == 530)
    return "the server wants TLS first: set tls = starttls or tls = "
           "implicit";
  if (code == 421 || code == 454)
    return "the server refuses logins for now; wait, then test again";
  return NULL;
}

static gboolean
rm_smtp_auth_fail (GString *report, GError **error, const char *what,
                   const char *hint)
{
  g_string_append_printf (report, "authentication: failed: %s\n", what);
  g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_AUTH,
               "authentication failed: %s", what);
  rm_smtp_add_hint (error, hint);
  return FALSE;
}

static gboolean
rm_smtp_conn_auth (RmSmtpConn *c, const RmServer *srv, GPtrArray *ehlo,
                   GString *report, GError **error)
{
  g_autoptr (GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *reply = NULL;
  const char *mechs = rm_smtp_ehlo_find (ehlo, "AUTH");
  const char *mech = NULL;
  int code;

  if (mechs == NULL)
    return rm_smtp_auth_fail (report, error, "server does not offer AUTH",
                              "use the server's submission port (587 "
                              "with STARTTLS, or 465 with implicit TLS)");
  if (c->ssl == NULL && !rm_smtp_conn_is_loopback (c))
    return rm_smtp_auth_fail (report, error,
                              "refusing to send the "
                              "password over plaintext to a remote "
                              "address",
                              "set tls = starttls or tls = "
                              "implicit");
  if (rm_smtp_has_word (mechs, "PLAIN"))
    mech = "PLAIN";
  else if (rm_smtp_has_word (mechs, "LOGIN"))
    mech = "LOGIN";
  else
    return rm_smtp_auth_fail (report, error,
                              "server offers no mechanism "
                              "rampmail can use (PLAIN, LOGIN)",
                              NULL);

  code = mech[0] == 'P' ? rm_smtp_auth_plain (c, srv, lines, error)
                        : rm_smtp_auth_login (c, srv, lines, error);
  if (code == 0)
    return FALSE;
  if (code == 235)
    {
      g_string_append_printf (report, "authentication: ok (%s)\n", mech);
      return TRUE;
    }
  reply = rm_smtp_reply_string (lines);
  return rm_smtp_auth_fail (report, error, reply,
                            rm_smtp_auth_hint (code, reply));
}

/* ---- verify ------------------------------------------------------------- */

static void
rm_smtp_quit (RmSmtpConn *c, GString *report)
{
  g_autoptr (GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) local = NULL;
  g_autofree char *first = NULL;

  if (rm_smtp_conn_ask (c, "QUIT\r\n", lines, &local) == 0)
    {
      g_string_append_printf (report, "QUIT: %s\n", local->message);
      return;
    }
  first = rm_smtp_first_line (lines);
  g_string_append_printf (report, "QUIT: %s\n", first);
}

static gboolean
rm_smtp_dialog (RmSmtpConn *c, const RmServer *srv, SSL_CTX *ctx,
                GString *report, GError **error)
{
  g_autoptr (GPtrArray) ehlo = g_ptr_array_new_with_free_func (g_free);
  gboolean ok;

  if (srv->tls == RM_TLS_IMPLICIT
      && !rm_smtp_conn_tls (c, ctx, report, error))
    return FALSE;
  if (!rm_smtp_greet (c, srv, ehlo, report, error))
    return FALSE;
  if (srv->tls == RM_TLS_STARTTLS
      && !rm_smtp_conn_starttls (c, srv, ctx, ehlo, report, error))
    return FALSE;
  ok = srv->user == NULL || rm_smtp_conn_auth (c, srv, ehlo, report, error);
  rm_smtp_report_extensions (report, ehlo);
  return ok;
}

gboolean
rm_smtp_verify (const RmServer *srv, GString *report, GError **error)
{
  RmSmtpTls tls = { 0 };
  RmSmtpConn c = { .fd = -1 };
  SSL_CTX *ctx = NULL;
  struct sigaction old_pipe;
  char version[64];
  gboolean ok;

  if (smtp_version (version, sizeof version, 0))
    g_string_append_printf (report, "client: libESMTP %s\n", version);
  if (!rm_smtp_check_server (srv, error))
    return FALSE;
  if (srv->tls != RM_TLS_NONE
      && (ctx = rm_smtp_tls_context (&tls, srv, error)) == NULL)
    return FALSE;
  c.timeout_ms = (int) rm_smtp_seconds (srv->timeout, RM_SMTP_DEFAULT_TIMEOUT)
                 * 1000;

  rm_smtp_sigpipe_ignore (&old_pipe);
  ok = rm_smtp_conn_open (&c, srv, report, error);
  if (!ok)
    rm_smtp_add_hint (error, "check host and port, and that this machine "
                             "may reach the server");
  else
    ok = rm_smtp_dialog (&c, srv, ctx, report, error);
  if (c.fd >= 0 && !c.broken)
    rm_smtp_quit (&c, report);
  rm_smtp_conn_close (&c);
  sigaction (SIGPIPE, &old_pipe, NULL);

  SSL_CTX_free (ctx);
  rm_smtp_tls_clear (&tls);
  if (!ok)
    g_prefix_error (error, "%s:%u: ", srv->host, srv->port);
  return ok;
}
