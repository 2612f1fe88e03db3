/* The `smtp` transport: relays messages to one server with libESMTP.
 *
 * send() runs one libESMTP session per call, so all the messages of a
 * call share one connection (pipelined when the server offers it), and
 * reads each message from its spool file in 64 KiB chunks. It works around
 * the sharp edges of Debian's libESMTP 1.1 (see libesmtp-facts.md):
 *
 *  - connect() has no timeout: an interval timer (SIGALRM, no SA_RESTART)
 *    interrupts it, first after connect_timeout seconds, then every
 *    RM_SMTP_RETRY_USEC until the connection is made, so that every
 *    further address libESMTP tries is cut short too;
 *  - its other timeouts are milliseconds, silently raised to the RFC
 *    minimums unless Timeout_OVERRIDE_RFC2822_MINIMUM is given;
 *  - a dropped connection raises SIGPIPE, ignored during the session;
 *  - its socket keeps Nagle's algorithm: the event callback finds the
 *    socket libESMTP has just connected and sets TCP_NODELAY;
 *  - a session "succeeds" when nothing was sent: every message is judged
 *    from its own reverse-path, recipient and transfer statuses;
 *  - it writes addresses into commands verbatim: addresses with control
 *    characters, angle brackets or over 254 octets are refused here.
 *
 * TLS (see smtp-tls.c for the context and the implicit-TLS relay):
 * STARTTLS is REQUIRED with a context of our own per session, so a server
 * that does not offer it ends the session before any mail; the event
 * callback checks the configured name where libESMTP checks the name DNS
 * returned. Implicit TLS goes through the relay thread of smtp-tls.c.
 *
 * AUTH: PLAIN and LOGIN only (LOGIN and PLAIN need AUTH_PLUGIN_PLAIN; the
 * interaction callback refuses NTLM, which asks for a realm). libESMTP
 * reports no AUTH outcome and carries on unauthenticated after a refusal,
 * so the monitor callback watches for the 235 reply; when a user is set
 * and none came, the connection is shut down as libESMTP writes the first
 * MAIL, and the message callback refuses the data, so nothing goes out.
 * The password is handed out only over TLS, or in plaintext to a loopback
 * address (127.0.0.0/8, ::1: tests and local relays), checked on the
 * connected socket. The monitor keeps server replies and command verbs,
 * never a client line, so no password reaches a log or an error.
 *
 * A connection lost after the whole message went out is reported as
 * RM_RESULT_UNKNOWN (RFC 1047), unless the socket had already been closed
 * by the server when the message callback reported the end of the data,
 * before libESMTP wrote the final dot.
 *
 * verify() speaks SMTP itself (connect, TLS, greeting, EHLO, STARTTLS,
 * AUTH, QUIT) with the same TLS rules, because libESMTP never connects for
 * a session without a message to send.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#include <glib.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <auth-client.h>
#include <libesmtp.h>

#include <rampmail/plugin.h>

#include "smtp.h"

#define RM_SMTP_CHUNK (64 * 1024)
#define RM_SMTP_ADDRESS_MAX 254
#define RM_SMTP_HELO_MAX 255
#define RM_SMTP_RETRY_USEC 200000
#define RM_SMTP_MAX_TIMEOUT 86400
#define RM_SMTP_FD_SCAN 1024
#define RM_SMTP_VERB_MAX 12

typedef struct RmSmtpRun RmSmtpRun;

/* One message of a send() call and what its callback saw. */
typedef struct {
  RmSmtpRun *run;
  RmMessage *msg;
  smtp_message_t handle;   /* NULL when refused before the session */
  smtp_recipient_t *rcpts; /* msg->n_rcpts handles, NULL if refused */
  RmAttempt *attempt;      /* this message's element of the attempts */
  gboolean judged;         /* outcome recorded and handed to msg->done */
  gboolean started;        /* msg->started was called */
  gboolean eof_given;      /* the callback reported the end of the data */
  gboolean peer_gone;      /* ... while the server had already hung up */
  int read_errno;
} RmSmtpMsg;

/* The state of one send() call, shared by the callbacks. */
struct RmSmtpRun {
  const RmServer *srv;
  char *buf;       /* RM_SMTP_CHUNK octets for the callbacks */
  unsigned port;   /* where libESMTP connects: srv->port, or the
                            * relay's for implicit TLS */
  GArray *old_fds; /* sockets to the port before the session */
  int fd;          /* libESMTP's socket, -1 if unknown */
  gboolean connected;
  gboolean no_8bitmime; /* 8BITMIME needed but not offered */
  gboolean read_failed; /* a message callback failed */
  GString *partial;     /* unfinished reply line seen by the monitor */
  GString *reply;       /* text of the reply being read */
  RmSmtpMsg *msgs;      /* the messages of this call */
  size_t n_msgs;
  char *refusal;               /* last 4xx or 5xx reply, "CODE TEXT" */
  char verb[RM_SMTP_VERB_MAX]; /* verb of the last command written */
  gboolean mail_started;       /* the first MAIL went out */

  SSL_CTX *ctx;        /* this session's TLS context, or NULL */
  RmSmtpTls tls;       /* what its handshake saw */
  RmSmtpRelay *relay;  /* implicit TLS: the relay, or NULL */
  char *relay_error;   /* why the relay ended early */
  gboolean tls_active; /* the connection to the server is TLS */
  gboolean starttls_sent;
  gboolean no_starttls;   /* STARTTLS required but not offered */
  char *starttls_refusal; /* the reply refusing STARTTLS */

  auth_context_t auth;    /* when srv->user is set */
  gboolean peer_loopback; /* libESMTP's peer is a loopback address */
  gboolean plain_refused; /* plaintext AUTH to a remote address */
  gboolean auth_offered;  /* the last EHLO reply offered AUTH */
  char *auth_mechs;       /* ... these mechanisms */
  gboolean auth_tried;    /* an AUTH command went out */
  gboolean auth_pending;  /* ... and its final reply has not come */
  gboolean authenticated; /* a 235 came */
  gboolean auth_blocked;  /* the session was cut for want of AUTH */
  int auth_code;          /* the last AUTH refusal */
  char *auth_reply;
};

/* What was in place before the session changed signals and timers. */
typedef struct {
  struct sigaction old_alarm;
  struct itimerval old_timer;
  sigset_t old_mask;
  gint64 started;
} RmSmtpSignals;

/* The outcome of one message, applied to its attempt and recipients. */
typedef struct {
  RmResultCode result;
  int code;
  char *reply;
  gboolean settles; /* a server reply that holds for accepted
                            * recipients too */
} RmSmtpVerdict;

static volatile sig_atomic_t rm_smtp_alarm_fired;

GQuark
rm_smtp_error_quark (void)
{
  return g_quark_from_static_string ("rm-smtp-error-quark");
}

/* ---- settings ----------------------------------------------------------- */

unsigned
rm_smtp_seconds (unsigned value, unsigned fallback)
{
  if (value == 0)
    return fallback;
  return MIN (value, RM_SMTP_MAX_TIMEOUT);
}

static gboolean
rm_smtp_printable (const char *s, gboolean allow_space)
{
  for (; *s != '\0'; s++)
    {
      unsigned char c = (unsigned char) *s;

      if (c < 0x20 || c == 0x7f || (c == ' ' && !allow_space))
        return FALSE;
    }
  return TRUE;
}

static gboolean
rm_smtp_address_ok (const char *address, gboolean may_be_empty)
{
  size_t len = strlen (address);

  if (len == 0)
    return may_be_empty;
  if (len > RM_SMTP_ADDRESS_MAX || strpbrk (address, "<>") != NULL)
    return FALSE;
  return rm_smtp_printable (address, TRUE);
}

gboolean
rm_smtp_check_server (const RmServer *srv, GError **error)
{
  if (srv->host == NULL || *srv->host == '\0'
      || !rm_smtp_printable (srv->host, FALSE))
    {
      g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_CONFIG,
                   "server %s: invalid host name", srv->name);
      return FALSE;
    }
  if (srv->port == 0 || srv->port > 65535)
    {
      g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_CONFIG,
                   "server %s: invalid port %u", srv->name, srv->port);
      return FALSE;
    }
  if (srv->helo == NULL || *srv->helo == '\0'
      || strlen (srv->helo) > RM_SMTP_HELO_MAX
      || !rm_smtp_printable (srv->helo, FALSE))
    {
      g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_CONFIG,
                   "server %s: invalid helo name", srv->name);
      return FALSE;
    }
  return TRUE;
}

/* What libESMTP itself must connect to: not an IPv6 literal. */
static gboolean
rm_smtp_check_library_host (const RmServer *srv, GError **error)
{
  if (srv->tls == RM_TLS_IMPLICIT || strchr (srv->host, ':') == NULL)
    return TRUE;
  g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_CONFIG,
               "server %s: libesmtp cannot connect to an IPv6 address "
               "literal (%s); use a host name",
               srv->name, srv->host);
  return FALSE;
}

static gboolean
rm_smtp_is_loopback_host (const char *host)
{
  struct in_addr in;
  struct in6_addr in6;

  if (g_ascii_strcasecmp (host, "localhost") == 0)
    return TRUE;
  if (inet_pton (AF_INET, host, &in) == 1)
    return (ntohl (in.s_addr) >> 24) == 127;
  return inet_pton (AF_INET6, host, &in6) == 1 && IN6_IS_ADDR_LOOPBACK (&in6);
}

/* A password goes in plaintext only to this machine (checked again on
 * the connected socket). */
static gboolean
rm_smtp_check_auth_policy (const RmServer *srv, GError **error)
{
  if (srv->user == NULL || srv->tls != RM_TLS_NONE
      || rm_smtp_is_loopback_host (srv->host))
    return TRUE;
  g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_CONFIG,
               "server %s: refusing to send the password over a plaintext "
               "connection to %s; set tls = starttls or tls = implicit",
               srv->name, srv->host);
  return FALSE;
}

static char *
rm_smtp_describe_errno (int err)
{
  char buf[256];

  if (err < 0)
    return g_strdup (g_strerror (-err));
  switch (err)
    {
    case 0:
      return g_strdup ("no error reported");
    case SMTP_ERR_DROPPED_CONNECTION:
      return g_strdup ("connection lost or reply timed out");
    case SMTP_ERR_EXTENSION_NOT_AVAILABLE:
      return g_strdup ("a required smtp extension is not offered");
    default:
      if (smtp_strerror (err, buf, sizeof buf) == NULL)
        return g_strdup_printf ("libesmtp error %d", err);
      buf[0] = g_ascii_tolower (buf[0]);
      return g_strdup (buf);
    }
}

/* ---- signals and the connect timeout ------------------------------------ */

static void
rm_smtp_on_alarm (int sig)
{
  (void) sig;
  rm_smtp_alarm_fired = 1;
}

static void
rm_smtp_timer_stop (void)
{
  struct itimerval off = { { 0, 0 }, { 0, 0 } };

  setitimer (ITIMER_REAL, &off, NULL);
}

/* libESMTP and OpenSSL write to sockets without MSG_NOSIGNAL. */
void
rm_smtp_sigpipe_ignore (struct sigaction *old)
{
  struct sigaction sa;

  memset (&sa, 0, sizeof sa);
  sigemptyset (&sa.sa_mask);
  sa.sa_handler = SIG_IGN;
  sigaction (SIGPIPE, &sa, old);
}

static void
rm_smtp_signals_arm (RmSmtpSignals *saved, unsigned seconds)
{
  struct sigaction sa;
  struct itimerval timer = { { 0, RM_SMTP_RETRY_USEC }, { seconds, 0 } };
  sigset_t alarm_only;

  /* No SA_RESTART: the blocked connect() must fail with EINTR. */
  memset (&sa, 0, sizeof sa);
  sigemptyset (&sa.sa_mask);
  sa.sa_handler = rm_smtp_on_alarm;
  sigaction (SIGALRM, &sa, &saved->old_alarm);

  sigemptyset (&alarm_only);
  sigaddset (&alarm_only, SIGALRM);
  pthread_sigmask (SIG_UNBLOCK, &alarm_only, &saved->old_mask);

  rm_smtp_alarm_fired = 0;
  saved->started = g_get_monotonic_time ();
  setitimer (ITIMER_REAL, &timer, &saved->old_timer);
}

static void
rm_smtp_old_timer_restore (const RmSmtpSignals *saved)
{
  struct itimerval timer = saved->old_timer;
  gint64 left = timer.it_value.tv_sec * G_USEC_PER_SEC
                + timer.it_value.tv_usec;

  if (left == 0)
    return;
  left -= g_get_monotonic_time () - saved->started;
  left = MAX (left, 1);
  timer.it_value.tv_sec = left / G_USEC_PER_SEC;
  timer.it_value.tv_usec = left % G_USEC_PER_SEC;
  setitimer (ITIMER_REAL, &timer, NULL);
}

static void
rm_smtp_signals_restore (const RmSmtpSignals *saved)
{
  rm_smtp_timer_stop ();
  sigaction (SIGALRM, &saved->old_alarm, NULL);
  pthread_sigmask (SIG_SETMASK, &saved->old_mask, NULL);
  rm_smtp_old_timer_restore (saved);
}

/* ---- finding libESMTP's socket ------------------------------------------ */

static gboolean
rm_smtp_is_tcp_to (int fd, unsigned port)
{
  struct sockaddr_storage peer;
  socklen_t len = sizeof peer;
  int type = 0;
  socklen_t type_len = sizeof type;

  if (getsockopt (fd, SOL_SOCKET, SO_TYPE, &type, &type_len) < 0
      || type != SOCK_STREAM)
    return FALSE;
  if (getpeername (fd, (struct sockaddr *) &peer, &len) < 0)
    return FALSE;
  if (peer.ss_family == AF_INET)
    return ntohs (((struct sockaddr_in *) &peer)->sin_port) == port;
  if (peer.ss_family == AF_INET6)
    return ntohs (((struct sockaddr_in6 *) &peer)->sin6_port) == port;
  return FALSE;
}

/* The connected TCP sockets of this process whose peer port is port. */
static GArray *
rm_smtp_sockets_to (unsigned port)
{
  GArray *fds = g_array_new (FALSE, FALSE, sizeof (int));
  DIR *dir = opendir ("/proc/self/fd");
  struct dirent *entry;
  int fd;

  if (dir == NULL)
    {
      for (fd = 0; fd < RM_SMTP_FD_SCAN; fd++)
        if (rm_smtp_is_tcp_to (fd, port))
          g_array_append_val (fds, fd);
      return fds;
    }
  while ((entry = readdir (dir)) != NULL)
    {
      if (!g_ascii_isdigit (entry->d_name[0]))
        continue;
      fd = atoi (entry->d_name);
      if (fd != dirfd (dir) && rm_smtp_is_tcp_to (fd, port))
        g_array_append_val (fds, fd);
    }
  closedir (dir);
  return fds;
}

static gboolean
rm_smtp_fd_in (const GArray *fds, int fd)
{
  for (guint i = 0; i < fds->len; i++)
    if (g_array_index (fds, int, i) == fd)
      return TRUE;
  return FALSE;
}

/* Sets TCP_NODELAY on the sockets that appeared during the session and
 * remembers libESMTP's socket when there is exactly one. */
static void
rm_smtp_take_socket (RmSmtpRun *run)
{
  GArray *now = rm_smtp_sockets_to (run->port);
  int one = 1;
  int found = 0;

  for (guint i = 0; i < now->len; i++)
    {
      int fd = g_array_index (now, int, i);

      if (rm_smtp_fd_in (run->old_fds, fd))
        continue;
      setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      run->fd = fd;
      found++;
    }
  if (found != 1)
    run->fd = -1;
  g_array_unref (now);
}

/* ---- what the connection is ------------------------------------------- */

/* Cuts libESMTP's connection: whatever it writes next never leaves. */
static void
rm_smtp_cut (RmSmtpRun *run)
{
  if (run->fd >= 0)
    shutdown (run->fd, SHUT_RDWR);
}

/* At SMTP_EV_CONNECT: tells the relay which socket is libESMTP's, or
 * checks that a plaintext password would go to a loopback address. */
static void
rm_smtp_check_peer (RmSmtpRun *run)
{
  struct sockaddr_storage peer;
  socklen_t len = sizeof peer;

  if (run->relay != NULL)
    {
      rm_smtp_relay_expect (run->relay, run->fd);
      return;
    }
  if (run->srv->user == NULL || run->srv->tls != RM_TLS_NONE)
    return;
  if (run->fd >= 0
      && getpeername (run->fd, (struct sockaddr *) &peer, &len) == 0
      && rm_smtp_is_loopback ((struct sockaddr *) &peer))
    {
      run->peer_loopback = TRUE;
      return;
    }
  run->plain_refused = TRUE;
  rm_smtp_cut (run);
}

/* The certificate events: libESMTP asks whether to go on (*ok). */
static void
rm_smtp_on_certificate (RmSmtpRun *run, int event_no, va_list ap)
{
  const RmServer *srv = run->srv;
  int *ok;
  SSL *ssl;

  switch (event_no)
    {
    case SMTP_EV_INVALID_PEER_CERTIFICATE:
      (void) va_arg (ap, long);
      ok = va_arg (ap, int *);
      *ok = !srv->tls_verify && !run->tls.pin_mismatch;
      break;
    case SMTP_EV_NO_PEER_CERTIFICATE:
      ok = va_arg (ap, int *);
      *ok = !srv->tls_verify && !run->tls.has_pin;
      break;
    case SMTP_EV_WRONG_PEER_CERTIFICATE:
      ok = va_arg (ap, int *);
      (void) va_arg (ap, char *);
      ssl = va_arg (ap, SSL *);
      *ok = !srv->tls_verify
            || rm_smtp_tls_name_ok (&run->tls,
                                    SSL_get0_peer_certificate (ssl));
      break;
    default:
      break;
    }
}

/* ---- libESMTP callbacks ------------------------------------------------- */

static void rm_smtp_message_sent (RmSmtpRun *run, smtp_message_t message);

static void
rm_smtp_on_event (smtp_session_t session, int event_no, void *arg, ...)
{
  RmSmtpRun *run = arg;
  va_list ap;

  (void) session;
  va_start (ap, arg);
  switch (event_no)
    {
    case SMTP_EV_CONNECT:
      rm_smtp_timer_stop ();
      run->connected = TRUE;
      rm_smtp_take_socket (run);
      rm_smtp_check_peer (run);
      break;
    case SMTP_EV_EXTNA_8BITMIME:
      run->no_8bitmime = TRUE;
      break;
    case SMTP_EV_EXTNA_STARTTLS:
      run->no_starttls = TRUE;
      break;
    case SMTP_EV_STARTTLS_OK:
      run->tls_active = TRUE;
      break;
    case SMTP_EV_INVALID_PEER_CERTIFICATE:
    case SMTP_EV_NO_PEER_CERTIFICATE:
    case SMTP_EV_WRONG_PEER_CERTIFICATE:
      rm_smtp_on_certificate (run, event_no, ap);
      break;
    case SMTP_EV_MESSAGESENT:
      rm_smtp_message_sent (run, va_arg (ap, smtp_message_t));
      break;
    default:
      break;
    }
  va_end (ap);
}

/* Hands libESMTP's SASL plugins the user and the password, only over TLS
 * or to a loopback address, and only for PLAIN and LOGIN: any other field
 * (NTLM's realm) is refused. */
static int
rm_smtp_on_interact (auth_client_request_t request, char **result, int fields,
                     void *arg)
{
  RmSmtpRun *run = arg;
  const RmServer *srv = run->srv;

  if (!run->tls_active && !run->peer_loopback)
    return 0;
  /* One refused login per session: a second mechanism with the same
   * password would only count as another failure (Gmail locks out). */
  if (run->auth_code != 0)
    return 0;
  for (int i = 0; i < fields; i++)
    {
      unsigned what = request[i].flags & (AUTH_USER | AUTH_PASS | AUTH_REALM);

      if (what == AUTH_USER)
        result[i] = (char *) srv->user;
      else if (what == AUTH_PASS)
        result[i] = (char *) (srv->password != NULL ? srv->password : "");
      else
        return 0;
    }
  return 1;
}

/* ---- the monitor: server replies and command verbs ---------------------- */

static gboolean
rm_smtp_is_refusal_code (int code)
{
  return code >= 400 && code < 600;
}

static void
rm_smtp_note_extension (RmSmtpRun *run, const char *text)
{
  if (g_ascii_strncasecmp (text, "AUTH", 4) != 0
      || (text[4] != ' ' && text[4] != '=' && text[4] != '\0'))
    return;
  run->auth_offered = TRUE;
  g_free (run->auth_mechs);
  run->auth_mechs = g_strdup (text[4] != '\0' ? text + 5 : "");
  g_strdelimit (run->auth_mechs, "\t\r\n", ' ');
}

/* A whole reply came: remember refusals and the outcome of AUTH. */
static void
rm_smtp_on_reply (RmSmtpRun *run, int code, const char *text)
{
  if (rm_smtp_is_refusal_code (code))
    {
      g_free (run->refusal);
      run->refusal = g_strdup_printf ("%d %s", code, text);
    }
  if (strcmp (run->verb, "STARTTLS") == 0 && code != 220
      && run->starttls_refusal == NULL)
    run->starttls_refusal = g_strdup_printf ("%d %s", code, text);
  if (!run->auth_pending || code == 334)
    return;
  run->auth_pending = FALSE;
  if (code == 235)
    {
      run->authenticated = TRUE;
      return;
    }
  /* The first refusal is the server's verdict; what follows may only be
   * the answer to a cancelled second mechanism. */
  if (run->auth_code != 0)
    return;
  run->auth_code = code;
  g_free (run->auth_reply);
  run->auth_reply = g_strdup (text);
}

static void
rm_smtp_reply_line (RmSmtpRun *run, const char *line)
{
  const char *text;
  gboolean last;
  int code;

  if (!rm_smtp_parse_line (line, &code, &last, &text))
    {
      g_string_truncate (run->reply, 0);
      return;
    }
  if (strcmp (run->verb, "EHLO") == 0 && code == 250)
    rm_smtp_note_extension (run, text);
  rm_smtp_reply_append (run->reply, text);
  if (!last)
    return;
  rm_smtp_on_reply (run, code, run->reply->str);
  g_string_truncate (run->reply, 0);
}

static void
rm_smtp_replies_read (RmSmtpRun *run, const char *buf, int buflen)
{
  char *nl;

  g_string_append_len (run->partial, buf, buflen);
  while ((nl = memchr (run->partial->str, '\n', run->partial->len)) != NULL)
    {
      size_t len = nl - run->partial->str;
      g_autofree char *line = g_strndup (run->partial->str, len);

      rm_smtp_reply_line (run, g_strchomp (line));
      g_string_erase (run->partial, 0, len + 1);
    }
  if (run->partial->len > RM_SMTP_LINE_MAX)
    g_string_truncate (run->partial, 0);
}

/* The verb of a command line, upper case, or "" when it is not one. */
static void
rm_smtp_verb_of (const char *line, size_t len, char verb[RM_SMTP_VERB_MAX])
{
  size_t n = 0;

  while (n < len && n < RM_SMTP_VERB_MAX - 1 && g_ascii_isalpha (line[n]))
    {
      verb[n] = g_ascii_toupper (line[n]);
      n++;
    }
  verb[n] = '\0';
  if (n == len || (line[n] != ' ' && line[n] != '\r' && line[n] != ':'))
    verb[0] = '\0';
}

/* One command line libESMTP is about to write. Lines after AUTH are
 * SASL responses: never looked at beyond the absence of a verb. */
static void
rm_smtp_command (RmSmtpRun *run, const char *line, size_t len)
{
  char verb[RM_SMTP_VERB_MAX];

  if (run->auth_pending
      && (len < 5 || g_ascii_strncasecmp (line, "AUTH ", 5) != 0))
    return;
  rm_smtp_verb_of (line, len, verb);
  if (verb[0] == '\0')
    return;
  memcpy (run->verb, verb, sizeof verb);
  if (strcmp (verb, "EHLO") == 0)
    {
      run->auth_offered = FALSE;
      g_clear_pointer (&run->auth_mechs, g_free);
    }
  else if (strcmp (verb, "STARTTLS") == 0)
    run->starttls_sent = TRUE;
  else if (strcmp (verb, "AUTH") == 0)
    run->auth_tried = run->auth_pending = TRUE;
  else if (strcmp (verb, "MAIL") == 0)
    {
      run->mail_started = TRUE;
      if (run->srv->user != NULL && !run->authenticated)
        {
          run->auth_blocked = TRUE;
          rm_smtp_cut (run);
        }
    }
}

/* Commands up to the first MAIL; the message data is not looked at. */
static void
rm_smtp_commands_written (RmSmtpRun *run, const char *buf, int buflen)
{
  const char *end = buf + buflen;

  while (buf < end && !run->mail_started)
    {
      const char *nl = memchr (buf, '\n', end - buf);
      size_t len = (nl != NULL ? nl : end) - buf;

      rm_smtp_command (run, buf, len);
      buf += len + 1;
    }
}

static void
rm_smtp_on_monitor (const char *buf, int buflen, int writing, void *arg)
{
  RmSmtpRun *run = arg;

  if (buflen <= 0)
    return;
  if (writing == SMTP_CB_READING)
    rm_smtp_replies_read (run, buf, buflen);
  else if (writing == SMTP_CB_WRITING)
    rm_smtp_commands_written (run, buf, buflen);
}

static void
rm_smtp_note_eof (RmSmtpMsg *m)
{
  struct pollfd p = { .fd = m->run->fd, .events = POLLIN | POLLRDHUP };

  m->eof_given = TRUE;
  m->peer_gone = FALSE;
  if (p.fd < 0)
    return;
  if (poll (&p, 1, 0) > 0 && (p.revents & (POLLERR | POLLHUP | POLLRDHUP)))
    m->peer_gone = TRUE;
}

/* libESMTP's message callback: len == NULL rewinds; returning NULL ends
 * the data, and NULL with errno set makes libESMTP drop the connection
 * before the final dot. */
static const char *
rm_smtp_read_message (void **ctx, int *len, void *arg)
{
  RmSmtpMsg *m = arg;
  ssize_t n;

  (void) ctx;
  if (len == NULL)
    {
      m->eof_given = m->peer_gone = FALSE;
      m->read_errno = 0;
      if (lseek (m->msg->data_fd, 0, SEEK_SET) < 0)
        {
          m->read_errno = errno;
          m->run->read_failed = TRUE;
        }
      return NULL;
    }
  *len = 0;
  if (m->read_errno != 0)
    {
      errno = m->read_errno;
      return NULL;
    }
  if (m->run->srv->user != NULL && !m->run->authenticated)
    {
      /* NULL with errno set: libESMTP drops the connection before the
       * final dot (libesmtp-facts.md, 5b). */
      m->run->auth_blocked = TRUE;
      errno = EACCES;
      return NULL;
    }
  if (!m->started && m->msg->started != NULL)
    m->msg->started (m->msg, m->msg->done_data);
  m->started = TRUE;

  do
    n = read (m->msg->data_fd, m->run->buf, RM_SMTP_CHUNK);
  while (n < 0 && errno == EINTR);

  if (n < 0)
    {
      m->read_errno = errno;
      m->run->read_failed = TRUE;
      return NULL;
    }
  if (n == 0)
    {
      rm_smtp_note_eof (m);
      errno = 0;
      return NULL;
    }
  *len = (int) n;
  return m->run->buf;
}

/* ---- building the session ----------------------------------------------- */

static gboolean
rm_smtp_set_timeouts (smtp_session_t session, unsigned seconds)
{
  static const int which[] = {
    Timeout_GREETING, Timeout_ENVELOPE, Timeout_DATA,
    Timeout_TRANSFER, Timeout_DATA2,
  };
  long ms = (long) seconds * 1000L;

  for (size_t i = 0; i < G_N_ELEMENTS (which); i++)
    if (smtp_set_timeout (session,
                          which[i] | Timeout_OVERRIDE_RFC2822_MINIMUM, ms)
        != ms)
      return FALSE;
  return TRUE;
}

static void
rm_smtp_set_library_error (GError **error, const char *what)
{
  g_autofree char *why = rm_smtp_describe_errno (smtp_errno ());

  g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_LIBRARY,
               "libesmtp: %s: %s", what, why);
}

/* STARTTLS with this session's own context, required: never libESMTP's
 * context, which crashes the second session of a process and trusts the
 * caller's HOME (libesmtp-facts.md, 1 and 2b). */
static gboolean
rm_smtp_set_starttls (smtp_session_t session, RmSmtpRun *run)
{
  if (run->srv->tls != RM_TLS_STARTTLS)
    return smtp_starttls_enable (session, Starttls_DISABLED);
  return run->ctx != NULL && smtp_starttls_set_ctx (session, run->ctx)
         && smtp_starttls_enable (session, Starttls_REQUIRED);
}

static gboolean
rm_smtp_set_auth (smtp_session_t session, RmSmtpRun *run)
{
  static gsize initialised = 0;

  if (run->srv->user == NULL)
    return TRUE;
  if (g_once_init_enter (&initialised))
    {
      auth_client_init ();
      g_once_init_leave (&initialised, 1);
    }
  run->auth = auth_create_context ();
  return run->auth != NULL
         && auth_set_mechanism_flags (run->auth, AUTH_PLUGIN_PLAIN, 0)
         && auth_set_interact_cb (run->auth, rm_smtp_on_interact, run)
         && smtp_auth_set_context (session, run->auth);
}

static smtp_session_t
rm_smtp_session_new (RmSmtpRun *run, GError **error)
{
  const RmServer *srv = run->srv;
  g_autofree char *hostport = g_strdup_printf ("%s:%u", srv->host, run->port);
  unsigned timeout = rm_smtp_seconds (srv->timeout, RM_SMTP_DEFAULT_TIMEOUT);
  smtp_session_t session = smtp_create_session ();

  if (session == NULL)
    {
      rm_smtp_set_library_error (error, "cannot create a session");
      return NULL;
    }
  if (!smtp_set_server (session, hostport)
      || !smtp_set_hostname (session, srv->helo)
      || !rm_smtp_set_starttls (session, run)
      || !rm_smtp_set_auth (session, run)
      || !rm_smtp_set_timeouts (session, timeout)
      || !smtp_set_eventcb (session, rm_smtp_on_event, run)
      || !smtp_set_monitorcb (session, rm_smtp_on_monitor, run, 0))
    {
      rm_smtp_set_library_error (error, "cannot set up the session");
      smtp_destroy_session (session);
      return NULL;
    }
  return session;
}

static void
rm_smtp_set_result (RmResultCode *result, int *code, char **reply,
                    RmResultCode value, int smtp_code, const char *text)
{
  *result = value;
  *code = smtp_code;
  g_free (*reply);
  *reply = g_strdup (text);
}

static void
rm_smtp_refuse_message (RmSmtpMsg *m, RmAttempt *attempt, const char *why)
{
  RmMessage *msg = m->msg;

  rm_smtp_set_result (&attempt->result, &attempt->smtp_code, &attempt->reply,
                      RM_RESULT_PERMFAIL, 0, why);
  for (size_t j = 0; j < msg->n_rcpts; j++)
    rm_smtp_set_result (&msg->rcpts[j].result, &msg->rcpts[j].smtp_code,
                        &msg->rcpts[j].reply, RM_RESULT_PERMFAIL, 0, why);
}

/* Marks the recipients libESMTP must not see as refused and the others as
 * pending; returns how many remain. */
static size_t
rm_smtp_screen_recipients (RmMessage *msg)
{
  size_t valid = 0;

  for (size_t j = 0; j < msg->n_rcpts; j++)
    {
      RmRecipient *r = &msg->rcpts[j];

      if (rm_smtp_address_ok (r->address, FALSE))
        {
          r->result = RM_RESULT_PENDING;
          r->smtp_code = 0;
          g_clear_pointer (&r->reply, g_free);
          valid++;
        }
      else
        rm_smtp_set_result (&r->result, &r->smtp_code, &r->reply,
                            RM_RESULT_PERMFAIL, 0,
                            "address cannot be sent over smtp");
    }
  return valid;
}

static gboolean
rm_smtp_fill_message (RmSmtpMsg *m)
{
  RmMessage *msg = m->msg;
  smtp_message_t h = m->handle;

  if (!smtp_set_reverse_path (h, msg->sender)
      || !smtp_set_header_option (h, "Bcc", Hdr_PROHIBIT, 1)
      || !smtp_set_messagecb (h, rm_smtp_read_message, m))
    return FALSE;
  if (msg->body == RM_BODY_8BITMIME
      && !smtp_8bitmime_set_body (h, E8bitmime_8BITMIME))
    return FALSE;
  if (msg->size > 0 && !smtp_size_set_estimate (h, (unsigned long) msg->size))
    return FALSE;

  for (size_t j = 0; j < msg->n_rcpts; j++)
    {
      if (!rm_smtp_address_ok (msg->rcpts[j].address, FALSE))
        continue;
      m->rcpts[j] = smtp_add_recipient (h, msg->rcpts[j].address);
      if (m->rcpts[j] == NULL)
        return FALSE;
    }
  return TRUE;
}

static gboolean
rm_smtp_add_message (smtp_session_t session, RmSmtpMsg *m, RmAttempt *attempt,
                     GError **error)
{
  RmMessage *msg = m->msg;

  m->rcpts = g_new0 (smtp_recipient_t, MAX (msg->n_rcpts, 1));
  if (msg->sender == NULL || !rm_smtp_address_ok (msg->sender, TRUE))
    {
      rm_smtp_refuse_message (m, attempt,
                              "sender address cannot be sent over smtp");
      return TRUE;
    }
  if (rm_smtp_screen_recipients (msg) == 0)
    {
      rm_smtp_set_result (&attempt->result, &attempt->smtp_code,
                          &attempt->reply, RM_RESULT_PERMFAIL, 0,
                          "no recipient can be sent over smtp");
      return TRUE;
    }

  m->handle = smtp_add_message (session);
  if (m->handle == NULL || !rm_smtp_fill_message (m))
    {
      rm_smtp_set_library_error (error, "cannot add a message");
      return FALSE;
    }
  return TRUE;
}

/* ---- judging the outcome ------------------------------------------------ */

/* The reply text without CR, LF or other control characters, with the
 * enhanced status code in front when the server gave one. */
static char *
rm_smtp_reply_text (const smtp_status_t *st)
{
  GString *s = g_string_new (NULL);
  gboolean space = FALSE;

  if (st->enh_class != 0)
    g_string_append_printf (s, "%d.%d.%d ", st->enh_class, st->enh_subject,
                            st->enh_detail);
  for (const char *p = st->text != NULL ? st->text : ""; *p != '\0'; p++)
    {
      unsigned char c = (unsigned char) *p;

      if (c < 0x20 || c == 0x7f)
        {
          space = TRUE;
          continue;
        }
      if (space && s->len > 0)
        g_string_append_c (s, ' ');
      space = FALSE;
      g_string_append_c (s, (char) c);
    }
  return g_string_free (s, FALSE);
}

static void
rm_smtp_verdict_from (RmSmtpVerdict *v, const smtp_status_t *st)
{
  switch (st->code / 100)
    {
    case 2:
      v->result = RM_RESULT_OK;
      break;
    case 5:
      v->result = RM_RESULT_PERMFAIL;
      break;
    default:
      v->result = RM_RESULT_TEMPFAIL;
      break;
    }
  v->code = st->code;
  v->reply = rm_smtp_reply_text (st);
  v->settles = TRUE;
}

/* Why a message got no reply of its own. */
static char *
rm_smtp_missing_reason (const RmSmtpMsg *m, int err)
{
  const RmSmtpRun *run = m->run;

  if (m->read_errno != 0)
    return g_strdup_printf ("cannot read the message: %s",
                            g_strerror (m->read_errno));
  if (run->no_8bitmime && m->msg->body == RM_BODY_8BITMIME)
    return g_strdup ("server does not offer 8BITMIME, which this 8-bit "
                     "message needs");
  if (run->no_8bitmime)
    return g_strdup ("another message of the session needs 8BITMIME, "
                     "which the server does not offer");
  if (run->read_failed)
    return g_strdup ("the session ended when another message could not "
                     "be read");
  if (run->refusal != NULL)
    return g_strdup_printf ("server said %s", run->refusal);
  if (run->relay_error != NULL)
    return g_strdup_printf ("implicit TLS relay: %s", run->relay_error);
  return rm_smtp_describe_errno (err);
}

static void
rm_smtp_verdict_unsent (RmSmtpVerdict *v, const RmSmtpMsg *m, int err)
{
  g_autofree char *why = rm_smtp_missing_reason (m, err);

  v->code = 0;
  v->settles = FALSE;
  if (m->eof_given && !m->peer_gone && m->read_errno == 0)
    {
      v->result = RM_RESULT_UNKNOWN;
      v->reply = g_strdup_printf ("no reply after the final dot (%s): the "
                                  "server may have the message",
                                  why);
      return;
    }
  v->result = RM_RESULT_TEMPFAIL;
  v->reply = g_strdup_printf ("not sent: %s", why);
}

static void
rm_smtp_verdict_transfer (RmSmtpVerdict *v, const RmSmtpMsg *m, int err)
{
  const smtp_status_t *st = smtp_message_transfer_status (m->handle);
  int class = st->code / 100;

  if (class == 4 || class == 5 || (class == 2 && m->eof_given))
    {
      rm_smtp_verdict_from (v, st);
      return;
    }
  if (class == 2)
    {
      v->result = RM_RESULT_TEMPFAIL;
      v->code = st->code;
      v->reply = g_strdup_printf ("protocol error: the server replied %d "
                                  "before the message was sent",
                                  st->code);
      v->settles = TRUE;
      return;
    }
  rm_smtp_verdict_unsent (v, m, err);
}

static void
rm_smtp_judge_recipient (RmRecipient *r, smtp_recipient_t h,
                         const RmSmtpVerdict *v)
{
  const smtp_status_t *st = smtp_recipient_status (h);
  g_autofree char *text = NULL;

  switch (st->code / 100)
    {
    case 0:
      return;
    case 2:
      /* A refusal of the whole message after DATA is the attempt's: the
       * recipient stays PENDING (plugin.h). */
      if (v->settles && v->result != RM_RESULT_PERMFAIL)
        rm_smtp_set_result (&r->result, &r->smtp_code, &r->reply, v->result,
                            v->code, v->reply);
      return;
    default:
      text = rm_smtp_reply_text (st);
      rm_smtp_set_result (&r->result, &r->smtp_code, &r->reply,
                          st->code / 100 == 5 ? RM_RESULT_PERMFAIL
                                              : RM_RESULT_TEMPFAIL,
                          st->code, text);
      return;
    }
}

static void
rm_smtp_judge_message (RmSmtpMsg *m, RmAttempt *attempt, int err)
{
  const smtp_status_t *rp = smtp_reverse_path_status (m->handle);
  RmMessage *msg = m->msg;
  RmSmtpVerdict v = { RM_RESULT_PENDING, 0, NULL, FALSE };

  if (rp->code / 100 == 2)
    rm_smtp_verdict_transfer (&v, m, err);
  else if (rp->code != 0)
    rm_smtp_verdict_from (&v, rp);
  else
    rm_smtp_verdict_unsent (&v, m, err);

  rm_smtp_set_result (&attempt->result, &attempt->smtp_code, &attempt->reply,
                      v.result, v.code, v.reply);
  for (size_t j = 0; j < msg->n_rcpts; j++)
    {
      if (m->rcpts[j] == NULL)
        continue;
      if (rp->code / 100 == 2)
        rm_smtp_judge_recipient (&msg->rcpts[j], m->rcpts[j], &v);
      else if (rp->code != 0 && v.result != RM_RESULT_PERMFAIL)
        rm_smtp_set_result (&msg->rcpts[j].result, &msg->rcpts[j].smtp_code,
                            &msg->rcpts[j].reply, v.result, v.code, v.reply);
    }
  g_free (v.reply);
}

/* Records the outcome of a message whose final reply has come, and tells
 * rampmail at once (RmMessage.done), while the session goes on. */
static void
rm_smtp_message_sent (RmSmtpRun *run, smtp_message_t message)
{
  for (size_t i = 0; i < run->n_msgs; i++)
    {
      RmSmtpMsg *m = &run->msgs[i];

      if (m->handle != message || m->judged)
        continue;
      rm_smtp_judge_message (m, m->attempt, 0);
      m->judged = TRUE;
      if (m->msg->done != NULL)
        m->msg->done (m->msg, m->attempt, m->msg->done_data);
      return;
    }
}

static char *rm_smtp_tls_problem (const RmSmtpRun *run);

static void
rm_smtp_set_session_error (const RmSmtpRun *run, int err, GError **error)
{
  const RmServer *srv = run->srv;
  g_autofree char *why = rm_smtp_describe_errno (err);
  g_autofree char *tls = rm_smtp_tls_problem (run);

  if (tls != NULL)
    g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_TLS, "%s:%u: %s",
                 srv->host, srv->port, tls);
  else if (run->connected && run->refusal != NULL)
    g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL,
                 "%s:%u refused the session: %s", srv->host, srv->port,
                 run->refusal);
  else if (run->connected)
    g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL,
                 "%s:%u: session failed: %s", srv->host, srv->port, why);
  else if (rm_smtp_alarm_fired && err == -EINTR)
    g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_CONNECT,
                 "connect to %s:%u: timed out after %u s", srv->host,
                 srv->port,
                 rm_smtp_seconds (srv->connect_timeout,
                                  RM_SMTP_DEFAULT_CONNECT_TIMEOUT));
  else
    g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_CONNECT,
                 "connect to %s:%u: %s", srv->host, srv->port, why);
}

/* ---- what cut a session short ------------------------------------------ */

/* Why no message could even be tried: TLS or AUTH, which libESMTP does
 * not report; NULL when the messages tell. */
static char *
rm_smtp_tls_problem (const RmSmtpRun *run)
{
  g_autofree char *why = NULL;

  if (run->no_starttls)
    return g_strdup ("server does not offer STARTTLS, which tls = starttls "
                     "requires; nothing was sent in plaintext");
  if (run->starttls_refusal != NULL)
    return g_strdup_printf ("server refused STARTTLS: %s",
                            run->starttls_refusal);
  if (!run->starttls_sent || run->tls_active)
    return NULL;
  why = rm_smtp_tls_failure (&run->tls);
  return g_strdup_printf ("TLS: %s", why);
}

/* A user is set and the session went without AUTH: cut at the first MAIL,
 * or ended by libESMTP after an AUTH refusal. */
static gboolean
rm_smtp_auth_failed (const RmSmtpRun *run)
{
  return run->srv->user != NULL && !run->authenticated
         && (run->auth_blocked || run->auth_code != 0);
}

static char *
rm_smtp_auth_problem (const RmSmtpRun *run)
{
  if (run->plain_refused)
    return g_strdup ("refusing to send the password over plaintext to an "
                     "address that is not loopback; set tls = starttls "
                     "or tls = implicit");
  if (!rm_smtp_auth_failed (run) || run->auth_code != 0)
    return NULL;
  if (!run->auth_offered)
    return g_strdup ("server does not offer AUTH, and a user is "
                     "configured; nothing was sent");
  if (!run->auth_tried)
    return g_strdup_printf ("server offers no AUTH mechanism rampmail can "
                            "use (PLAIN, LOGIN): it offers %s",
                            *run->auth_mechs != '\0' ? run->auth_mechs
                                                     : "none");
  return g_strdup ("authentication did not succeed; nothing was sent");
}

/* The server refused AUTH: every message waits, with that reply. */
static void
rm_smtp_judge_auth_refused (RmSmtpRun *run)
{
  for (size_t i = 0; i < run->n_msgs; i++)
    {
      RmSmtpMsg *m = &run->msgs[i];

      if (m->handle == NULL || m->judged)
        continue;
      rm_smtp_set_result (&m->attempt->result, &m->attempt->smtp_code,
                          &m->attempt->reply, RM_RESULT_TEMPFAIL,
                          run->auth_code, run->auth_reply);
    }
}

static gboolean
rm_smtp_conclude (RmSmtpRun *run, int err, GError **error)
{
  const RmServer *srv = run->srv;
  g_autofree char *tls = rm_smtp_tls_problem (run);
  g_autofree char *auth = tls == NULL ? rm_smtp_auth_problem (run) : NULL;

  if (tls != NULL || auth != NULL)
    {
      g_set_error (error, RM_SMTP_ERROR,
                   tls != NULL ? RM_SMTP_ERROR_TLS : RM_SMTP_ERROR_AUTH,
                   "%s:%u: %s", srv->host, srv->port,
                   tls != NULL ? tls : auth);
      return FALSE;
    }
  if (rm_smtp_auth_failed (run))
    {
      rm_smtp_judge_auth_refused (run);
      return TRUE;
    }
  for (size_t i = 0; i < run->n_msgs; i++)
    if (run->msgs[i].handle != NULL && !run->msgs[i].judged)
      rm_smtp_judge_message (&run->msgs[i], run->msgs[i].attempt, err);
  return TRUE;
}

/* ---- send --------------------------------------------------------------- */

static void
rm_smtp_run_init (RmSmtpRun *run, const RmServer *srv)
{
  memset (run, 0, sizeof *run);
  run->srv = srv;
  run->port = srv->port;
  run->fd = -1;
  run->buf = g_malloc (RM_SMTP_CHUNK);
  run->partial = g_string_new (NULL);
  run->reply = g_string_new (NULL);
}

static void
rm_smtp_run_clear (RmSmtpRun *run)
{
  g_free (run->buf);
  g_string_free (run->partial, TRUE);
  g_string_free (run->reply, TRUE);
  g_free (run->refusal);
  if (run->old_fds != NULL)
    g_array_unref (run->old_fds);
  if (run->auth != NULL)
    auth_destroy_context (run->auth);
  SSL_CTX_free (run->ctx);
  rm_smtp_tls_clear (&run->tls);
  g_free (run->relay_error);
  g_free (run->starttls_refusal);
  g_free (run->auth_mechs);
  g_free (run->auth_reply);
}

static void
rm_smtp_msgs_free (RmSmtpMsg *ms, size_t n_msgs)
{
  for (size_t i = 0; i < n_msgs; i++)
    g_free (ms[i].rcpts);
  g_free (ms);
}

/* Implicit TLS: connects and does the handshake here, then points
 * libESMTP at the relay. */
static gboolean
rm_smtp_implicit_open (smtp_session_t session, RmSmtpRun *run, GError **error)
{
  const RmServer *srv = run->srv;
  g_autoptr (GString) scratch = g_string_new (NULL);
  g_autofree char *relay = NULL;
  unsigned timeout = rm_smtp_seconds (srv->timeout, RM_SMTP_DEFAULT_TIMEOUT);
  RmSmtpConn c = { .fd = -1, .timeout_ms = (int) timeout * 1000 };
  SSL *ssl;

  if (!rm_smtp_conn_open (&c, srv, scratch, error))
    return FALSE;
  ssl = rm_smtp_tls_connect (run->ctx, c.fd, c.timeout_ms, error);
  if (ssl != NULL)
    run->relay = rm_smtp_relay_start (
        ssl, c.fd,
        rm_smtp_seconds (srv->connect_timeout,
                         RM_SMTP_DEFAULT_CONNECT_TIMEOUT),
        timeout + 5, error);
  if (run->relay == NULL)
    {
      g_prefix_error (error, "%s:%u: %s", srv->host, srv->port,
                      ssl == NULL ? "TLS: " : "");
      SSL_free (ssl);
      close (c.fd);
      return FALSE;
    }
  run->tls_active = TRUE;
  run->port = rm_smtp_relay_port (run->relay);
  relay = g_strdup_printf ("127.0.0.1:%u", run->port);
  if (!smtp_set_server (session, relay))
    {
      rm_smtp_set_library_error (error, "cannot set the relay");
      return FALSE;
    }
  return TRUE;
}

static gboolean
rm_smtp_run_session (smtp_session_t session, RmSmtpRun *run, int *err)
{
  RmSmtpSignals saved;
  unsigned seconds = rm_smtp_seconds (run->srv->connect_timeout,
                                      RM_SMTP_DEFAULT_CONNECT_TIMEOUT);
  int ok;

  run->old_fds = rm_smtp_sockets_to (run->port);
  rm_smtp_signals_arm (&saved, seconds);
  ok = smtp_start_session (session);
  *err = smtp_errno ();
  rm_smtp_signals_restore (&saved);
  return ok != 0;
}

/* Connects (through the relay for implicit TLS) and runs the session,
 * with SIGPIPE ignored throughout. */
static gboolean
rm_smtp_deliver (smtp_session_t session, RmSmtpRun *run, int *err,
                 GError **error)
{
  struct sigaction old_pipe;
  gboolean ok = TRUE;

  rm_smtp_sigpipe_ignore (&old_pipe);
  if (run->srv->tls == RM_TLS_IMPLICIT)
    ok = rm_smtp_implicit_open (session, run, error);
  if (ok && !rm_smtp_run_session (session, run, err))
    {
      rm_smtp_set_session_error (run, *err, error);
      ok = FALSE;
    }
  if (run->relay != NULL)
    run->relay_error = rm_smtp_relay_finish (g_steal_pointer (&run->relay));
  sigaction (SIGPIPE, &old_pipe, NULL);
  return ok;
}

static gboolean
rm_smtp_prepare (RmSmtpRun *run, const RmServer *srv, GError **error)
{
  if (!rm_smtp_check_server (srv, error)
      || !rm_smtp_check_library_host (srv, error)
      || !rm_smtp_check_auth_policy (srv, error))
    return FALSE;
  if (srv->tls == RM_TLS_NONE)
    return TRUE;
  run->ctx = rm_smtp_tls_context (&run->tls, srv, error);
  return run->ctx != NULL;
}

/* One session for msgs; *no_8bitmime tells if it failed because a message
 * needs 8BITMIME and the server does not offer it. */
static gboolean
rm_smtp_send_once (const RmServer *srv, RmMessage *const *msgs, size_t n_msgs,
                   RmAttempt *attempt, gboolean *no_8bitmime, GError **error)
{
  RmSmtpRun run;
  RmSmtpMsg *ms;
  smtp_session_t session = NULL;
  gboolean any = FALSE;
  gboolean ok;
  int err = 0;

  *no_8bitmime = FALSE;
  rm_smtp_run_init (&run, srv);
  ok = rm_smtp_prepare (&run, srv, error);
  if (ok)
    session = rm_smtp_session_new (&run, error);
  if (session == NULL)
    {
      rm_smtp_run_clear (&run);
      return FALSE;
    }

  ms = g_new0 (RmSmtpMsg, n_msgs);
  run.msgs = ms;
  run.n_msgs = n_msgs;
  for (size_t i = 0; i < n_msgs && ok; i++)
    {
      ms[i].run = &run;
      ms[i].msg = msgs[i];
      ms[i].attempt = &attempt[i];
      ok = rm_smtp_add_message (session, &ms[i], &attempt[i], error);
      any = any || ms[i].handle != NULL;
    }

  if (ok && any)
    ok = rm_smtp_deliver (session, &run, &err, error);
  if (ok && any)
    ok = rm_smtp_conclude (&run, err, error);
  *no_8bitmime = run.no_8bitmime;

  smtp_destroy_session (session);
  rm_smtp_msgs_free (ms, n_msgs);
  rm_smtp_run_clear (&run);
  return ok;
}

/* libESMTP makes 8BITMIME a requirement of the whole session as soon as
 * one message is 8-bit (libesmtp-facts E4): against a server without it,
 * nothing is sent. Then the 7-bit messages go in a session of their own,
 * and only the 8-bit ones wait for a server that offers 8BITMIME. */
static gboolean
rm_smtp_send (const RmServer *srv, RmMessage *const *msgs, size_t n_msgs,
              RmAttempt *attempt, GError **error)
{
  g_autofree RmMessage **plain = NULL;
  g_autofree RmAttempt *plain_attempt = NULL;
  g_autofree size_t *index = NULL;
  g_autoptr (GError) local = NULL;
  gboolean no_8bitmime;
  size_t n = 0;

  if (n_msgs == 0)
    return TRUE;
  if (!rm_smtp_send_once (srv, msgs, n_msgs, attempt, &no_8bitmime, error))
    return FALSE;
  if (!no_8bitmime)
    return TRUE;
  for (size_t i = 0; i < n_msgs; i++)
    if (msgs[i]->body == RM_BODY_8BITMIME
        && attempt[i].result == RM_RESULT_TEMPFAIL)
      msgs[i]->needs_7bit = TRUE;
  plain = g_new0 (RmMessage *, n_msgs);
  plain_attempt = g_new0 (RmAttempt, n_msgs);
  index = g_new0 (size_t, n_msgs);
  for (size_t i = 0; i < n_msgs; i++)
    if (msgs[i]->body != RM_BODY_8BITMIME
        && attempt[i].result == RM_RESULT_TEMPFAIL)
      {
        index[n] = i;
        plain[n++] = msgs[i];
      }
  if (n == 0 || n == n_msgs)
    return TRUE;
  if (!rm_smtp_send_once (srv, plain, n, plain_attempt, &no_8bitmime, &local))
    {
      /* The first session's verdicts stand, with this reason. */
      for (size_t k = 0; k < n; k++)
        {
          g_free (attempt[index[k]].reply);
          attempt[index[k]].reply = g_strdup (local->message);
        }
      return TRUE;
    }
  for (size_t k = 0; k < n; k++)
    {
      g_free (attempt[index[k]].reply);
      attempt[index[k]] = plain_attempt[k];
    }
  return TRUE;
}

/* ---- module descriptor -------------------------------------------------- */

static const RmTransportOps ops = {
  .send = rm_smtp_send,
  .verify = rm_smtp_verify,
};

__attribute__ ((visibility ("default"))) const RmPluginInfo rampmail_plugin
    = { RM_PLUGIN_ABI, RM_PLUGIN_TRANSPORT, "smtp", &ops };
