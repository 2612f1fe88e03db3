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
 * A connection lost after the whole message went out is reported as
 * RM_RESULT_UNKNOWN (RFC 1047), unless the socket had already been closed
 * by the server when the message callback reported the end of the data,
 * before libESMTP wrote the final dot.
 *
 * verify() speaks SMTP itself (connect, greeting, EHLO, QUIT), because
 * libESMTP never connects for a session without a message to send.
 */
#define _GNU_SOURCE

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
#include <libesmtp.h>

#include <rampmail/plugin.h>

#define RM_SMTP_CHUNK (64 * 1024)
#define RM_SMTP_ADDRESS_MAX 254
#define RM_SMTP_HELO_MAX 255
#define RM_SMTP_RETRY_USEC 200000
#define RM_SMTP_DEFAULT_CONNECT_TIMEOUT 30
#define RM_SMTP_DEFAULT_TIMEOUT 300
#define RM_SMTP_MAX_TIMEOUT 86400
#define RM_SMTP_FD_SCAN 1024
#define RM_SMTP_LINE_MAX 4096
#define RM_SMTP_REPLY_LINES 64

#define RM_SMTP_ERROR (rm_smtp_error_quark ())

typedef enum {
  RM_SMTP_ERROR_CONFIG,   /* the server's settings cannot work */
  RM_SMTP_ERROR_CONNECT,  /* no usable connection */
  RM_SMTP_ERROR_PROTOCOL, /* the server refused or misbehaved */
  RM_SMTP_ERROR_LIBRARY,  /* libESMTP refused a call */
} RmSmtpErrorCode;

typedef struct RmSmtpRun RmSmtpRun;

/* One message of a send() call and what its callback saw. */
typedef struct {
  RmSmtpRun *run;
  RmMessage *msg;
  smtp_message_t handle;   /* NULL when refused before the session */
  smtp_recipient_t *rcpts; /* msg->n_rcpts handles, NULL if refused */
  RmAttempt *attempt;      /* this message's element of the attempts */
  gboolean judged;         /* outcome recorded and handed to msg->done */
  gboolean eof_given;      /* the callback reported the end of the data */
  gboolean peer_gone;      /* ... while the server had already hung up */
  int read_errno;
} RmSmtpMsg;

/* The state of one send() call, shared by the callbacks. */
struct RmSmtpRun {
  const RmServer *srv;
  char *buf;               /* RM_SMTP_CHUNK octets for the callbacks */
  GArray *old_fds;         /* sockets to the port before the session */
  int fd;                  /* libESMTP's socket, -1 if unknown */
  gboolean connected;
  gboolean no_8bitmime;    /* 8BITMIME needed but not offered */
  gboolean read_failed;    /* a message callback failed */
  GString *partial;        /* unfinished reply line seen by the monitor */
  RmSmtpMsg *msgs;         /* the messages of this call */
  size_t n_msgs;
  char *refusal;           /* last 4xx or 5xx reply line */
};

/* What was in place before the session changed signals and timers. */
typedef struct {
  struct sigaction old_alarm;
  struct sigaction old_pipe;
  struct itimerval old_timer;
  sigset_t old_mask;
  gint64 started;
} RmSmtpSignals;

/* The outcome of one message, applied to its attempt and recipients. */
typedef struct {
  RmResultCode result;
  int code;
  char *reply;
  gboolean settles;        /* a server reply that holds for accepted
                            * recipients too */
} RmSmtpVerdict;

/* A plain connection for verify(). */
typedef struct {
  int fd;
  int timeout_ms;
  char buf[RM_SMTP_LINE_MAX];
  size_t len;
} RmSmtpConn;

static volatile sig_atomic_t rm_smtp_alarm_fired;

static GQuark
rm_smtp_error_quark (void)
{
  return g_quark_from_static_string ("rm-smtp-error-quark");
}

/* ---- settings ----------------------------------------------------------- */

static unsigned
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

static gboolean
rm_smtp_check_server (const RmServer *srv, GError **error)
{
  if (srv->host == NULL || *srv->host == '\0'
      || !rm_smtp_printable (srv->host, FALSE))
    {
      g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_CONFIG,
                   "server %s: invalid host name", srv->name);
      return FALSE;
    }
  if (strchr (srv->host, ':') != NULL)
    {
      g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_CONFIG,
                   "server %s: libesmtp cannot connect to an IPv6 address "
                   "literal (%s); use a host name", srv->name, srv->host);
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

static void
rm_smtp_signals_arm (RmSmtpSignals *saved, unsigned seconds)
{
  struct sigaction sa;
  struct itimerval timer = { { 0, RM_SMTP_RETRY_USEC }, { seconds, 0 } };
  sigset_t alarm_only;

  memset (&sa, 0, sizeof sa);
  sigemptyset (&sa.sa_mask);
  sa.sa_handler = SIG_IGN;
  sigaction (SIGPIPE, &sa, &saved->old_pipe);

  /* No SA_RESTART: the blocked connect() must fail with EINTR. */
  sa.sa_handler = rm_smtp_on_alarm;
  sa.sa_flags = 0;
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
  sigaction (SIGPIPE, &saved->old_pipe, NULL);
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
  GArray *now = rm_smtp_sockets_to (run->srv->port);
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

/* ---- libESMTP callbacks ------------------------------------------------- */

static void rm_smtp_message_sent (RmSmtpRun *run, smtp_message_t message);

static void
rm_smtp_on_event (smtp_session_t session, int event_no, void *arg, ...)
{
  RmSmtpRun *run = arg;

  (void) session;
  switch (event_no)
    {
    case SMTP_EV_CONNECT:
      rm_smtp_timer_stop ();
      run->connected = TRUE;
      rm_smtp_take_socket (run);
      break;
    case SMTP_EV_EXTNA_8BITMIME:
      run->no_8bitmime = TRUE;
      break;
    case SMTP_EV_MESSAGESENT:
      {
        va_list ap;
        smtp_message_t message;

        va_start (ap, arg);
        message = va_arg (ap, smtp_message_t);
        va_end (ap);
        rm_smtp_message_sent (run, message);
      }
      break;
    default:
      break;
    }
}

static gboolean
rm_smtp_is_refusal (const char *line)
{
  return (line[0] == '4' || line[0] == '5') && g_ascii_isdigit (line[1])
         && g_ascii_isdigit (line[2]) && (line[3] == ' ' || line[3] == '\0');
}

/* Keeps the last 4xx or 5xx reply line the server sent, to explain a
 * session that ends before any message status says why. */
static void
rm_smtp_on_monitor (const char *buf, int buflen, int writing, void *arg)
{
  RmSmtpRun *run = arg;
  char *nl;

  if (writing != SMTP_CB_READING || buflen <= 0)
    return;
  g_string_append_len (run->partial, buf, buflen);
  while ((nl = memchr (run->partial->str, '\n', run->partial->len)) != NULL)
    {
      size_t len = nl - run->partial->str;
      char *line = g_strndup (run->partial->str, len);

      g_strchomp (line);
      if (rm_smtp_is_refusal (line))
        {
          g_free (run->refusal);
          run->refusal = g_steal_pointer (&line);
        }
      g_free (line);
      g_string_erase (run->partial, 0, len + 1);
    }
  if (run->partial->len > RM_SMTP_LINE_MAX)
    g_string_truncate (run->partial, 0);
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

static smtp_session_t
rm_smtp_session_new (RmSmtpRun *run, GError **error)
{
  const RmServer *srv = run->srv;
  g_autofree char *hostport = g_strdup_printf ("%s:%u", srv->host,
                                               srv->port);
  unsigned timeout = rm_smtp_seconds (srv->timeout, RM_SMTP_DEFAULT_TIMEOUT);
  smtp_session_t session = smtp_create_session ();

  if (session == NULL)
    {
      rm_smtp_set_library_error (error, "cannot create a session");
      return NULL;
    }
  if (!smtp_set_server (session, hostport)
      || !smtp_set_hostname (session, srv->helo)
      || !smtp_starttls_enable (session, Starttls_DISABLED)
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

  rm_smtp_set_result (&attempt->result, &attempt->smtp_code,
                      &attempt->reply, RM_RESULT_PERMFAIL, 0, why);
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
rm_smtp_add_message (smtp_session_t session, RmSmtpMsg *m,
                     RmAttempt *attempt, GError **error)
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
                                  "server may have the message", why);
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
                                  "before the message was sent", st->code);
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
      if (v->settles)
        rm_smtp_set_result (&r->result, &r->smtp_code, &r->reply,
                            v->result, v->code, v->reply);
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

  rm_smtp_set_result (&attempt->result, &attempt->smtp_code,
                      &attempt->reply, v.result, v.code, v.reply);
  for (size_t j = 0; j < msg->n_rcpts; j++)
    {
      if (m->rcpts[j] == NULL)
        continue;
      if (rp->code / 100 == 2)
        rm_smtp_judge_recipient (&msg->rcpts[j], m->rcpts[j], &v);
      else if (rp->code != 0)
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

static void
rm_smtp_set_session_error (const RmSmtpRun *run, int err, GError **error)
{
  const RmServer *srv = run->srv;
  g_autofree char *why = rm_smtp_describe_errno (err);

  if (run->connected && run->refusal != NULL)
    g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL,
                 "%s:%u refused the session: %s", srv->host, srv->port,
                 run->refusal);
  else if (run->connected)
    g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL,
                 "%s:%u: session failed: %s", srv->host, srv->port, why);
  else if (rm_smtp_alarm_fired && err == -EINTR)
    g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_CONNECT,
                 "connect to %s:%u: timed out after %u s", srv->host,
                 srv->port, rm_smtp_seconds (srv->connect_timeout,
                                             RM_SMTP_DEFAULT_CONNECT_TIMEOUT));
  else
    g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_CONNECT,
                 "connect to %s:%u: %s", srv->host, srv->port, why);
}

/* ---- send --------------------------------------------------------------- */

static void
rm_smtp_run_init (RmSmtpRun *run, const RmServer *srv)
{
  memset (run, 0, sizeof *run);
  run->srv = srv;
  run->fd = -1;
  run->buf = g_malloc (RM_SMTP_CHUNK);
  run->partial = g_string_new (NULL);
}

static void
rm_smtp_run_clear (RmSmtpRun *run)
{
  g_free (run->buf);
  g_string_free (run->partial, TRUE);
  g_free (run->refusal);
  if (run->old_fds != NULL)
    g_array_unref (run->old_fds);
}

static void
rm_smtp_msgs_free (RmSmtpMsg *ms, size_t n_msgs)
{
  for (size_t i = 0; i < n_msgs; i++)
    g_free (ms[i].rcpts);
  g_free (ms);
}

static gboolean
rm_smtp_run_session (smtp_session_t session, RmSmtpRun *run, int *err)
{
  RmSmtpSignals saved;
  unsigned seconds = rm_smtp_seconds (run->srv->connect_timeout,
                                      RM_SMTP_DEFAULT_CONNECT_TIMEOUT);
  int ok;

  run->old_fds = rm_smtp_sockets_to (run->srv->port);
  rm_smtp_signals_arm (&saved, seconds);
  ok = smtp_start_session (session);
  *err = smtp_errno ();
  rm_smtp_signals_restore (&saved);
  return ok != 0;
}

static gboolean
rm_smtp_send (const RmServer *srv, RmMessage *const *msgs, size_t n_msgs,
              RmAttempt *attempt, GError **error)
{
  RmSmtpRun run;
  RmSmtpMsg *ms;
  smtp_session_t session;
  gboolean any = FALSE;
  gboolean ok = TRUE;
  int err = 0;

  if (n_msgs == 0)
    return TRUE;
  if (!rm_smtp_check_server (srv, error))
    return FALSE;
  rm_smtp_run_init (&run, srv);
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

  if (ok && any && !rm_smtp_run_session (session, &run, &err))
    {
      rm_smtp_set_session_error (&run, err, error);
      ok = FALSE;
    }
  for (size_t i = 0; i < n_msgs && ok; i++)
    if (ms[i].handle != NULL && !ms[i].judged)
      rm_smtp_judge_message (&ms[i], &attempt[i], err);

  smtp_destroy_session (session);
  rm_smtp_msgs_free (ms, n_msgs);
  rm_smtp_run_clear (&run);
  return ok;
}

/* ---- verify ------------------------------------------------------------- */

static gboolean
rm_smtp_wait (int fd, short events, int timeout_ms)
{
  struct pollfd p = { .fd = fd, .events = events };
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  int n;

  for (;;)
    {
      int left = (int) ((deadline - g_get_monotonic_time ()) / 1000);

      n = poll (&p, 1, MAX (left, 0));
      if (n >= 0 || errno != EINTR)
        break;
    }
  if (n == 0)
    errno = ETIMEDOUT;
  return n > 0;
}

static int
rm_smtp_connect_one (const struct addrinfo *ai, int timeout_ms)
{
  int fd = socket (ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK
                                      | SOCK_CLOEXEC, ai->ai_protocol);
  int soerr = 0;
  socklen_t len = sizeof soerr;

  if (fd < 0)
    return -1;
  if (connect (fd, ai->ai_addr, ai->ai_addrlen) == 0)
    return fd;
  if (errno == EINPROGRESS && rm_smtp_wait (fd, POLLOUT, timeout_ms)
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
                   NI_NUMERICHOST) != 0)
    return g_strdup ("?");
  return g_strdup (host);
}

static gboolean
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

static char *
rm_smtp_conn_line (RmSmtpConn *c, GError **error)
{
  char *nl;
  ssize_t n;

  while ((nl = memchr (c->buf, '\n', c->len)) == NULL)
    {
      if (c->len == sizeof c->buf)
        {
          g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL,
                       "reply line longer than %d octets", RM_SMTP_LINE_MAX);
          return NULL;
        }
      if (!rm_smtp_wait (c->fd, POLLIN, c->timeout_ms))
        n = -1;
      else
        n = read (c->fd, c->buf + c->len, sizeof c->buf - c->len);
      if (n == 0 || (n < 0 && errno != ETIMEDOUT))
        {
          g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL,
                       "no reply: %s", n == 0 ? "connection closed"
                                              : g_strerror (errno));
          return NULL;
        }
      if (n < 0)
        {
          g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL,
                       "no reply within %d s", c->timeout_ms / 1000);
          return NULL;
        }
      c->len += (size_t) n;
    }

  char *line = g_strndup (c->buf, nl - c->buf);

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

      if (line == NULL)
        return 0;
      g_ptr_array_add (lines, line);
      if (strlen (line) < 3 || !g_ascii_isdigit (line[0])
          || !g_ascii_isdigit (line[1]) || !g_ascii_isdigit (line[2])
          || (line[3] != ' ' && line[3] != '-' && line[3] != '\0'))
        break;
      if (line[3] != '-')
        return (int) g_ascii_strtoll (line, NULL, 10);
    }
  g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL,
               "malformed reply");
  return 0;
}

static gboolean
rm_smtp_conn_send (RmSmtpConn *c, const char *command, GError **error)
{
  size_t len = strlen (command);
  size_t done = 0;

  while (done < len)
    {
      ssize_t n = send (c->fd, command + done, len - done, MSG_NOSIGNAL);

      if (n < 0 && errno == EAGAIN && rm_smtp_wait (c->fd, POLLOUT,
                                                    c->timeout_ms))
        continue;
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL,
                       "send: %s", g_strerror (errno));
          return FALSE;
        }
      done += (size_t) n;
    }
  return TRUE;
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

static void
rm_smtp_report_extensions (GString *report, GPtrArray *lines)
{
  g_string_append (report, "EHLO extensions:");
  for (guint i = 1; i < lines->len; i++)
    g_string_append_printf (report, "%s %s", i > 1 ? "," : "",
                            (char *) g_ptr_array_index (lines, i) + 4);
  if (lines->len < 2)
    g_string_append (report, " none");
  g_string_append_c (report, '\n');
}

static gboolean
rm_smtp_greet (RmSmtpConn *c, const RmServer *srv, GString *report,
               GError **error)
{
  g_autoptr (GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *ehlo = g_strdup_printf ("EHLO %s\r\n", srv->helo);
  g_autofree char *helo = g_strdup_printf ("HELO %s\r\n", srv->helo);
  int code = rm_smtp_conn_ask (c, NULL, lines, error);

  if (code == 0)
    return FALSE;
  g_string_append_printf (report, "greeting: %s\n",
                          (char *) g_ptr_array_index (lines, 0));
  if (code != 220)
    {
      g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL,
                   "greeting refused: %s",
                   (char *) g_ptr_array_index (lines, 0));
      return FALSE;
    }

  code = rm_smtp_conn_ask (c, ehlo, lines, error);
  if (code / 100 == 2)
    {
      g_string_append_printf (report, "EHLO: %s\n",
                              (char *) g_ptr_array_index (lines, 0));
      rm_smtp_report_extensions (report, lines);
      return TRUE;
    }
  if (code == 0)
    return FALSE;
  g_string_append_printf (report, "EHLO refused: %s\n",
                          (char *) g_ptr_array_index (lines, 0));

  code = rm_smtp_conn_ask (c, helo, lines, error);
  if (code == 0)
    return FALSE;
  g_string_append_printf (report, "HELO: %s\n",
                          (char *) g_ptr_array_index (lines, 0));
  if (code / 100 != 2)
    g_set_error (error, RM_SMTP_ERROR, RM_SMTP_ERROR_PROTOCOL,
                 "EHLO and HELO refused: %s",
                 (char *) g_ptr_array_index (lines, 0));
  return code / 100 == 2;
}

static void
rm_smtp_quit (RmSmtpConn *c, GString *report)
{
  g_autoptr (GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) local = NULL;

  if (rm_smtp_conn_ask (c, "QUIT\r\n", lines, &local) != 0)
    g_string_append_printf (report, "QUIT: %s\n",
                            (char *) g_ptr_array_index (lines, 0));
  else
    g_string_append_printf (report, "QUIT: %s\n", local->message);
}

static gboolean
rm_smtp_verify (const RmServer *srv, GString *report, GError **error)
{
  RmSmtpConn c = { .fd = -1 };
  char version[64];
  gboolean ok;

  if (smtp_version (version, sizeof version, 0))
    g_string_append_printf (report, "client: libESMTP %s\n", version);
  if (!rm_smtp_check_server (srv, error))
    return FALSE;
  c.timeout_ms = (int) rm_smtp_seconds (srv->timeout,
                                        RM_SMTP_DEFAULT_TIMEOUT) * 1000;
  if (!rm_smtp_conn_open (&c, srv, report, error))
    return FALSE;

  ok = rm_smtp_greet (&c, srv, report, error);
  if (ok)
    rm_smtp_quit (&c, report);
  close (c.fd);
  if (!ok)
    g_prefix_error (error, "%s:%u: ", srv->host, srv->port);
  return ok;
}

/* ---- module descriptor -------------------------------------------------- */

static const RmTransportOps ops = {
  .send = rm_smtp_send,
  .verify = rm_smtp_verify,
};

__attribute__ ((visibility ("default"))) const RmPluginInfo rampmail_plugin
    = { RM_PLUGIN_ABI, RM_PLUGIN_TRANSPORT, "smtp", &ops };
