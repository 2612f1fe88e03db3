/* TLS for the smtp transport.
 *
 * One SSL_CTX per session, whoever does the handshake:
 *  - TLS 1.2 and only 1.2. After STARTTLS, libESMTP 1.1 waits for the
 *    EHLO reply before flushing EHLO when a TLS 1.3 server's
 *    NewSessionTicket records arrive first, and the session stalls until a
 *    timeout (libesmtp-facts.md, E1). TLS 1.2 sends its ticket inside the
 *    handshake, before the Finished messages, so nothing can arrive
 *    between the handshake and EHLO: the stall is impossible, not rarer;
 *  - trust comes from tls_ca_file or OpenSSL's default paths, never from
 *    the caller's HOME or XDG folders (libESMTP's own context reads them);
 *  - OpenSSL checks the certificate against the configured host name or
 *    IP address during the handshake, and SNI carries the name;
 *  - a tls_fingerprint pin (SHA-256 of the certificate's DER) must match,
 *    also when tls_verify is off;
 *  - no renegotiation, and no client certificate from the caller's HOME.
 *
 * Implicit TLS (SMTPS): libESMTP speaks only plaintext and STARTTLS, so
 * send() makes the TLS connection itself and points libESMTP at a private
 * listener on 127.0.0.1, port 0. A relay thread serves one connection
 * there: the one whose address and port equal those of the socket
 * libESMTP connected, which send() finds at SMTP_EV_CONNECT. It closes
 * the listener as soon as it has it, then copies bytes both ways until
 * either side closes, send() stops it, or nothing moves for the timeout.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "smtp.h"

#define RM_SMTP_TLS_ERROR (rm_smtp_tls_error_quark ())
#define RM_SMTP_RELAY_BUF (16 * 1024)
#define RM_SMTP_RELAY_TRIES 8

typedef enum {
  RM_SMTP_TLS_ERROR_CONFIG,
  RM_SMTP_TLS_ERROR_HANDSHAKE,
  RM_SMTP_TLS_ERROR_RELAY,
} RmSmtpTlsErrorCode;

static GQuark
rm_smtp_tls_error_quark (void)
{
  return g_quark_from_static_string ("rm-smtp-tls-error-quark");
}

/* The reason of the oldest OpenSSL error in this thread's queue. */
static char *
rm_smtp_tls_queue_text (void)
{
  unsigned long e = ERR_get_error ();
  char buf[256];

  ERR_clear_error ();
  if (e == 0)
    return NULL;
  if (ERR_SYSTEM_ERROR (e))
    return g_strdup (g_strerror (ERR_GET_REASON (e)));
  if (ERR_reason_error_string (e) != NULL)
    return g_strdup (ERR_reason_error_string (e));
  ERR_error_string_n (e, buf, sizeof buf);
  return g_strdup (buf);
}

/* ---- the pin ------------------------------------------------------------ */

static gboolean
rm_smtp_tls_parse_pin (RmSmtpTls *tls, const char *text, GError **error)
{
  const char *p = text;
  size_t n = 0;

  if (g_ascii_strncasecmp (p, "sha256:", 7) == 0)
    p += 7;
  for (; *p != '\0' && n < 2 * sizeof tls->pin; p++)
    {
      if (*p == ':')
        continue;
      if (!g_ascii_isxdigit (*p))
        break;
      tls->pin[n / 2] = (guint8) ((tls->pin[n / 2] << 4)
                                  | g_ascii_xdigit_value (*p));
      n++;
    }
  if (*p != '\0' || n != 2 * sizeof tls->pin)
    {
      g_set_error (error, RM_SMTP_TLS_ERROR, RM_SMTP_TLS_ERROR_CONFIG,
                   "server %s: tls_fingerprint must be sha256: and 64 "
                   "hex digits",
                   tls->srv->name);
      return FALSE;
    }
  tls->has_pin = TRUE;
  return TRUE;
}

static gboolean
rm_smtp_tls_digest (X509 *cert, guint8 md[SHA256_DIGEST_LENGTH])
{
  unsigned int len = 0;

  return X509_digest (cert, EVP_sha256 (), md, &len) == 1
         && len == SHA256_DIGEST_LENGTH;
}

static char *
rm_smtp_tls_fingerprint (X509 *cert)
{
  guint8 md[SHA256_DIGEST_LENGTH];
  GString *s;

  if (cert == NULL || !rm_smtp_tls_digest (cert, md))
    return g_strdup ("(unknown)");
  s = g_string_new ("sha256:");
  for (size_t i = 0; i < sizeof md; i++)
    g_string_append_printf (s, "%02x", md[i]);
  return g_string_free (s, FALSE);
}

static gboolean
rm_smtp_tls_pin_ok (const RmSmtpTls *tls, X509 *cert)
{
  guint8 md[SHA256_DIGEST_LENGTH];

  if (!tls->has_pin)
    return TRUE;
  return rm_smtp_tls_digest (cert, md)
         && CRYPTO_memcmp (md, tls->pin, sizeof md) == 0;
}

/* ---- callbacks ---------------------------------------------------------- */

static void
rm_smtp_tls_keep_peer (RmSmtpTls *tls, X509 *cert)
{
  if (cert == NULL || cert == tls->peer)
    return;
  X509_up_ref (cert);
  X509_free (tls->peer);
  tls->peer = cert;
}

/* Replaces OpenSSL's chain verification: runs it (with the host name set
 * on the context), remembers the outcome and the certificate, applies the
 * pin, and lets an unverified chain through only when tls_verify is off;
 * then SSL_get_verify_result still tells libESMTP what failed. */
static int
rm_smtp_tls_verify_chain (X509_STORE_CTX *store, void *arg)
{
  RmSmtpTls *tls = arg;
  X509 *leaf = X509_STORE_CTX_get0_cert (store);
  int ok = X509_verify_cert (store);

  rm_smtp_tls_keep_peer (tls, leaf);
  if (ok <= 0 && tls->verify_error == X509_V_OK)
    {
      tls->verify_error = X509_STORE_CTX_get_error (store);
      if (tls->verify_error == X509_V_OK)
        tls->verify_error = X509_V_ERR_UNSPECIFIED;
    }
  if (leaf == NULL || !rm_smtp_tls_pin_ok (tls, leaf))
    {
      tls->pin_mismatch = tls->has_pin;
      X509_STORE_CTX_set_error (store, X509_V_ERR_APPLICATION_VERIFICATION);
      return 0;
    }
  if (ok <= 0 && !tls->srv->tls_verify)
    return 1;
  return ok > 0;
}

static void
rm_smtp_tls_on_info (const SSL *cssl, int where, int ret)
{
  SSL *ssl = (SSL *) cssl;
  RmSmtpTls *tls = SSL_CTX_get_app_data (SSL_get_SSL_CTX (ssl));

  if (tls == NULL)
    return;
  if (where & SSL_CB_HANDSHAKE_START)
    {
      /* libESMTP loads a client certificate from the caller's HOME. */
      SSL_certs_clear (ssl);
      if (!tls->ip_literal)
        SSL_set_tlsext_host_name (ssl, tls->srv->host);
    }
  if (where & SSL_CB_HANDSHAKE_DONE)
    tls->done = TRUE;
  if ((where & SSL_CB_ALERT) && (ret >> 8) == SSL3_AL_FATAL
      && tls->alert == NULL)
    tls->alert = g_strdup_printf ("%s alert: %s",
                                  (where & SSL_CB_READ) ? "received" : "sent",
                                  SSL_alert_desc_string_long (ret));
}

/* ---- the context -------------------------------------------------------- */

static gboolean
rm_smtp_tls_trust (SSL_CTX *ctx, const RmServer *srv, GError **error)
{
  g_autofree char *why = NULL;

  if (srv->tls_ca_file != NULL)
    {
      if (SSL_CTX_load_verify_locations (ctx, srv->tls_ca_file, NULL) == 1)
        return TRUE;
      why = rm_smtp_tls_queue_text ();
      g_set_error (error, RM_SMTP_TLS_ERROR, RM_SMTP_TLS_ERROR_CONFIG,
                   "server %s: tls_ca_file %s: %s", srv->name,
                   srv->tls_ca_file, why != NULL ? why : "cannot load it");
      return FALSE;
    }
  if (SSL_CTX_set_default_verify_paths (ctx) == 1)
    return TRUE;
  why = rm_smtp_tls_queue_text ();
  g_set_error (error, RM_SMTP_TLS_ERROR, RM_SMTP_TLS_ERROR_CONFIG,
               "server %s: cannot load the system's trusted certificates: "
               "%s",
               srv->name, why != NULL ? why : "unknown error");
  return FALSE;
}

static gboolean
rm_smtp_tls_expect_name (SSL_CTX *ctx, const RmSmtpTls *tls)
{
  X509_VERIFY_PARAM *param = SSL_CTX_get0_param (ctx);

  X509_VERIFY_PARAM_set_hostflags (param,
                                   X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (tls->ip_literal)
    return X509_VERIFY_PARAM_set1_ip_asc (param, tls->srv->host) == 1;
  return X509_VERIFY_PARAM_set1_host (param, tls->srv->host, 0) == 1;
}

static gboolean
rm_smtp_tls_is_ip (const char *host)
{
  unsigned char addr[sizeof (struct in6_addr)];

  return inet_pton (AF_INET, host, addr) == 1
         || inet_pton (AF_INET6, host, addr) == 1;
}

SSL_CTX *
rm_smtp_tls_context (RmSmtpTls *tls, const RmServer *srv, GError **error)
{
  SSL_CTX *ctx;

  memset (tls, 0, sizeof *tls);
  tls->srv = srv;
  tls->ip_literal = rm_smtp_tls_is_ip (srv->host);
  if (srv->tls_fingerprint != NULL
      && !rm_smtp_tls_parse_pin (tls, srv->tls_fingerprint, error))
    return NULL;

  ERR_clear_error ();
  ctx = SSL_CTX_new (TLS_client_method ());
  if (ctx == NULL || SSL_CTX_set_min_proto_version (ctx, TLS1_2_VERSION) != 1
      || SSL_CTX_set_max_proto_version (ctx, TLS1_2_VERSION) != 1
      || !rm_smtp_tls_expect_name (ctx, tls))
    {
      g_autofree char *why = rm_smtp_tls_queue_text ();

      g_set_error (error, RM_SMTP_TLS_ERROR, RM_SMTP_TLS_ERROR_CONFIG,
                   "server %s: cannot set up TLS: %s", srv->name,
                   why != NULL ? why : "unknown error");
      SSL_CTX_free (ctx);
      return NULL;
    }
  if (!rm_smtp_tls_trust (ctx, srv, error))
    {
      SSL_CTX_free (ctx);
      return NULL;
    }
  SSL_CTX_set_options (ctx, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_verify (ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_cert_verify_callback (ctx, rm_smtp_tls_verify_chain, tls);
  SSL_CTX_set_info_callback (ctx, rm_smtp_tls_on_info);
  SSL_CTX_set_app_data (ctx, tls);
  return ctx;
}

void
rm_smtp_tls_clear (RmSmtpTls *tls)
{
  X509_free (tls->peer);
  g_free (tls->alert);
  memset (tls, 0, sizeof *tls);
}

gboolean
rm_smtp_tls_name_ok (const RmSmtpTls *tls, X509 *cert)
{
  if (cert == NULL)
    return FALSE;
  if (tls->ip_literal)
    return X509_check_ip_asc (cert, tls->srv->host, 0) == 1;
  return X509_check_host (cert, tls->srv->host, 0,
                          X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL)
         == 1;
}

/* ---- describing the outcome --------------------------------------------- */

char *
rm_smtp_tls_failure (const RmSmtpTls *tls)
{
  g_autofree char *queued = rm_smtp_tls_queue_text ();

  if (tls->pin_mismatch)
    {
      g_autofree char *seen = rm_smtp_tls_fingerprint (tls->peer);

      return g_strdup_printf ("certificate fingerprint %s does not match "
                              "tls_fingerprint",
                              seen);
    }
  if (tls->verify_error != X509_V_OK && tls->srv->tls_verify)
    return g_strdup_printf (
        "certificate verify failed: %s",
        X509_verify_cert_error_string (tls->verify_error));
  if (tls->alert != NULL)
    return g_strdup_printf ("handshake failed: %s", tls->alert);
  if (queued != NULL)
    return g_strdup_printf ("handshake failed: %s", queued);
  return g_strdup ("handshake failed");
}

char *
rm_smtp_tls_hint (const RmSmtpTls *tls)
{
  if (tls->pin_mismatch)
    return g_strdup ("if the server's certificate was replaced on "
                     "purpose, put its new fingerprint in tls_fingerprint");
  if (!tls->srv->tls_verify)
    return NULL;
  switch (tls->verify_error)
    {
    case X509_V_OK:
      return NULL;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return g_strdup ("the certificate is outside its validity period: "
                       "check this machine's clock, and ask the server's "
                       "operator to renew it");
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return g_strdup_printf ("the certificate does not name %s: set host "
                              "to a name the certificate carries",
                              tls->srv->host);
    default:
      return g_strdup ("the certificate's issuer is not trusted here: set "
                       "tls_ca_file to the CA that issued it");
    }
}

static char *
rm_smtp_tls_name_text (X509_NAME *name)
{
  BIO *bio = BIO_new (BIO_s_mem ());
  char *data = NULL;
  long len;
  GString *s;

  if (bio == NULL)
    return g_strdup ("?");
  X509_NAME_print_ex (bio, name, 0, XN_FLAG_RFC2253);
  len = BIO_get_mem_data (bio, &data);
  s = g_string_new_len (data, MAX (len, 0));
  BIO_free (bio);
  for (gsize i = 0; i < s->len; i++)
    if ((unsigned char) s->str[i] < 0x20 || s->str[i] == 0x7f)
      s->str[i] = '?';
  return g_string_free (s, FALSE);
}

static char *
rm_smtp_tls_date_text (const ASN1_TIME *t)
{
  struct tm tm;
  char buf[32];

  if (t == NULL || ASN1_TIME_to_tm (t, &tm) != 1
      || strftime (buf, sizeof buf, "%Y-%m-%d", &tm) == 0)
    return g_strdup ("?");
  return g_strdup (buf);
}

static void
rm_smtp_tls_report_cert (const RmSmtpTls *tls, GString *report)
{
  g_autofree char *subject = rm_smtp_tls_name_text (
      X509_get_subject_name (tls->peer));
  g_autofree char *issuer = rm_smtp_tls_name_text (
      X509_get_issuer_name (tls->peer));
  g_autofree char *expires = rm_smtp_tls_date_text (
      X509_get0_notAfter (tls->peer));
  g_autofree char *fingerprint = rm_smtp_tls_fingerprint (tls->peer);

  g_string_append_printf (report,
                          "certificate: subject %s, issuer %s, "
                          "expires %s, ",
                          subject, issuer, expires);
  if (tls->verify_error == X509_V_OK)
    g_string_append (report, "verified ok\n");
  else
    g_string_append_printf (
        report, "FAILED: %s\n",
        X509_verify_cert_error_string (tls->verify_error));
  g_string_append_printf (report, "fingerprint: %s%s\n", fingerprint,
                          !tls->has_pin ? ""
                          : tls->pin_mismatch
                              ? ", DOES NOT match tls_fingerprint"
                              : ", matches tls_fingerprint");
}

void
rm_smtp_tls_report (const RmSmtpTls *tls, SSL *ssl, GString *report)
{
  if (ssl != NULL && tls->done)
    g_string_append_printf (report, "TLS: %s, cipher %s\n",
                            SSL_get_version (ssl), SSL_get_cipher_name (ssl));
  if (tls->peer != NULL)
    rm_smtp_tls_report_cert (tls, report);
  else
    g_string_append (report, "certificate: none received\n");
  if (!tls->srv->tls_verify)
    g_string_append (report, "WARNING: certificate verification is turned "
                             "off (tls_verify = false)\n");
}

/* ---- blocking I/O with deadlines ---------------------------------------- */

gboolean
rm_smtp_poll_until (int fd, short events, gint64 deadline)
{
  struct pollfd p = { .fd = fd, .events = events };
  int n;

  for (;;)
    {
      gint64 left = (deadline - g_get_monotonic_time () + 999) / 1000;

      n = poll (&p, 1, (int) CLAMP (left, 0, G_MAXINT));
      if (n >= 0 || errno != EINTR)
        break;
    }
  if (n == 0)
    errno = ETIMEDOUT;
  return n > 0;
}

/* After an SSL call returned ret: waits for what it needs, or fails. */
static gboolean
rm_smtp_tls_retry (SSL *ssl, int fd, int ret, gint64 deadline)
{
  switch (SSL_get_error (ssl, ret))
    {
    case SSL_ERROR_WANT_READ:
      return rm_smtp_poll_until (fd, POLLIN, deadline);
    case SSL_ERROR_WANT_WRITE:
      return rm_smtp_poll_until (fd, POLLOUT, deadline);
    case SSL_ERROR_ZERO_RETURN:
      errno = 0;
      return FALSE;
    default:
      if (errno == 0 || errno == EAGAIN)
        errno = EPROTO;
      return FALSE;
    }
}

SSL *
rm_smtp_tls_connect (SSL_CTX *ctx, int fd, int timeout_ms, GError **error)
{
  RmSmtpTls *tls = SSL_CTX_get_app_data (ctx);
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  SSL *ssl;
  int ret;

  ERR_clear_error ();
  ssl = SSL_new (ctx);
  if (ssl == NULL || SSL_set_fd (ssl, fd) != 1)
    {
      SSL_free (ssl);
      g_set_error (error, RM_SMTP_TLS_ERROR, RM_SMTP_TLS_ERROR_HANDSHAKE,
                   "cannot set up a TLS connection");
      return NULL;
    }
  errno = 0;
  while ((ret = SSL_connect (ssl)) != 1)
    if (!rm_smtp_tls_retry (ssl, fd, ret, deadline))
      {
        g_autofree char *why = errno == ETIMEDOUT ? g_strdup_printf (
                                   "handshake timed out after %d s",
                                   timeout_ms / 1000)
                                                  : rm_smtp_tls_failure (tls);

        g_set_error (error, RM_SMTP_TLS_ERROR, RM_SMTP_TLS_ERROR_HANDSHAKE,
                     "%s", why);
        SSL_free (ssl);
        return NULL;
      }
  return ssl;
}

gssize
rm_smtp_tls_read (SSL *ssl, int fd, char *buf, size_t len, int timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  int n;

  ERR_clear_error ();
  errno = 0;
  while ((n = SSL_read (ssl, buf, (int) MIN (len, G_MAXINT))) <= 0)
    if (!rm_smtp_tls_retry (ssl, fd, n, deadline))
      {
        ERR_clear_error ();
        return errno == 0 ? 0 : -1;
      }
  return n;
}

gboolean
rm_smtp_tls_write (SSL *ssl, int fd, const char *buf, size_t len,
                   int timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  int n;

  ERR_clear_error ();
  errno = 0;
  while ((n = SSL_write (ssl, buf, (int) len)) <= 0)
    if (!rm_smtp_tls_retry (ssl, fd, n, deadline))
      {
        ERR_clear_error ();
        if (errno == 0)
          errno = EPIPE;
        return FALSE;
      }
  return TRUE;
}

gboolean
rm_smtp_is_loopback (const struct sockaddr *sa)
{
  if (sa->sa_family == AF_INET)
    {
      const struct sockaddr_in *in = (const struct sockaddr_in *) sa;

      return (ntohl (in->sin_addr.s_addr) >> 24) == 127;
    }
  if (sa->sa_family == AF_INET6)
    {
      const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;

      return IN6_IS_ADDR_LOOPBACK (&in6->sin6_addr);
    }
  return FALSE;
}

/* ---- the relay ---------------------------------------------------------- */

/* Octets on their way in one direction. */
typedef struct {
  char buf[RM_SMTP_RELAY_BUF];
  size_t len;
  size_t off;
  gboolean eof;
} RmSmtpRelayDir;

struct RmSmtpRelay {
  SSL *ssl;     /* the TLS connection to the server */
  int remote;   /* its socket */
  int listener; /* 127.0.0.1:port, until the connection */
  unsigned port;
  int local;   /* the connection from libESMTP */
  int stop[2]; /* send() writes to stop[1] to end the relay */
  int accept_ms;
  int idle_ms;
  GMutex lock; /* guards the fields below */
  GCond changed;
  gboolean expected_set;
  gboolean stopping;
  struct sockaddr_in expected; /* libESMTP's end; AF_UNSPEC: unknown */
  char *error;                 /* why it ended early; written by the thread */
  RmSmtpRelayDir up;           /* libESMTP to the server */
  RmSmtpRelayDir down;         /* the server to libESMTP */
  GThread *thread;
};

static void rm_smtp_relay_fail (RmSmtpRelay *r, const char *format, ...)
    G_GNUC_PRINTF (2, 3);

static void
rm_smtp_relay_fail (RmSmtpRelay *r, const char *format, ...)
{
  va_list ap;

  if (r->error != NULL)
    return;
  va_start (ap, format);
  r->error = g_strdup_vprintf (format, ap);
  va_end (ap);
}

/* Waits until send() names libESMTP's socket (or stops the relay) and
 * says whether peer is it. */
static gboolean
rm_smtp_relay_is_expected (RmSmtpRelay *r, const struct sockaddr_in *peer,
                           gint64 deadline)
{
  gboolean same;

  g_mutex_lock (&r->lock);
  while (!r->expected_set && !r->stopping)
    if (!g_cond_wait_until (&r->changed, &r->lock, deadline))
      break;
  same = r->expected_set && r->expected.sin_family == AF_INET
         && peer->sin_family == AF_INET
         && r->expected.sin_port == peer->sin_port
         && r->expected.sin_addr.s_addr == peer->sin_addr.s_addr;
  g_mutex_unlock (&r->lock);
  return same;
}

static gboolean
rm_smtp_relay_accept (RmSmtpRelay *r)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) r->accept_ms * 1000;

  for (int i = 0; i < RM_SMTP_RELAY_TRIES; i++)
    {
      struct pollfd p[2] = { { r->listener, POLLIN, 0 },
                             { r->stop[0], POLLIN, 0 } };
      struct sockaddr_in peer;
      socklen_t len = sizeof peer;
      gint64 left = (deadline - g_get_monotonic_time ()) / 1000;
      int fd;

      if (left <= 0 || poll (p, 2, (int) MIN (left, G_MAXINT)) == 0)
        {
          rm_smtp_relay_fail (r, "libesmtp did not connect to the relay");
          return FALSE;
        }
      if (p[1].revents != 0)
        return FALSE;
      fd = accept4 (r->listener, (struct sockaddr *) &peer, &len,
                    SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0)
        continue;
      if (len == sizeof peer
          && rm_smtp_relay_is_expected (r, &peer, deadline))
        {
          r->local = fd;
          close (r->listener);
          r->listener = -1;
          return TRUE;
        }
      close (fd);
      rm_smtp_relay_fail (r, "refused a connection to the relay that did "
                             "not come from libesmtp");
    }
  return FALSE;
}

/* One step from libESMTP's socket into up. */
static gboolean
rm_smtp_relay_from_local (RmSmtpRelay *r, RmSmtpRelayDir *d, gboolean *moved)
{
  ssize_t n;

  if (d->eof || d->len > 0)
    return TRUE;
  n = read (r->local, d->buf, sizeof d->buf);
  if (n > 0)
    {
      d->len = (size_t) n;
      d->off = 0;
      *moved = TRUE;
    }
  else if (n == 0)
    d->eof = TRUE;
  else if (errno != EAGAIN && errno != EINTR)
    return FALSE;
  return TRUE;
}

/* One step from up to the server; *want gets the poll events SSL needs. */
static gboolean
rm_smtp_relay_to_remote (RmSmtpRelay *r, RmSmtpRelayDir *d, short *want,
                         gboolean *moved)
{
  int n;

  if (d->len == 0)
    return TRUE;
  ERR_clear_error ();
  n = SSL_write (r->ssl, d->buf, (int) d->len);
  if (n > 0)
    {
      d->len = 0;
      *moved = TRUE;
      return TRUE;
    }
  switch (SSL_get_error (r->ssl, n))
    {
    case SSL_ERROR_WANT_READ:
      *want |= POLLIN;
      return TRUE;
    case SSL_ERROR_WANT_WRITE:
      *want |= POLLOUT;
      return TRUE;
    default:
      rm_smtp_relay_fail (r, "writing to the server failed");
      return FALSE;
    }
}

static gboolean
rm_smtp_relay_from_remote (RmSmtpRelay *r, RmSmtpRelayDir *d, short *want,
                           gboolean *moved)
{
  int n;

  if (d->eof || d->len > 0)
    return TRUE;
  ERR_clear_error ();
  n = SSL_read (r->ssl, d->buf, (int) sizeof d->buf);
  if (n > 0)
    {
      d->len = (size_t) n;
      d->off = 0;
      *moved = TRUE;
      return TRUE;
    }
  switch (SSL_get_error (r->ssl, n))
    {
    case SSL_ERROR_WANT_READ:
      *want |= POLLIN;
      break;
    case SSL_ERROR_WANT_WRITE:
      *want |= POLLOUT;
      break;
    default:
      /* close_notify, or a server that just closed the socket */
      d->eof = TRUE;
      ERR_clear_error ();
      break;
    }
  return TRUE;
}

static gboolean
rm_smtp_relay_to_local (RmSmtpRelay *r, RmSmtpRelayDir *d, gboolean *moved)
{
  ssize_t n;

  if (d->len == 0)
    return TRUE;
  n = send (r->local, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);
  if (n < 0)
    return errno == EAGAIN || errno == EINTR;
  d->off += (size_t) n;
  if (d->off == d->len)
    d->len = d->off = 0;
  *moved = TRUE;
  return TRUE;
}

/* Waits for any of the sockets; FALSE when stopped or idle too long. */
static gboolean
rm_smtp_relay_wait (RmSmtpRelay *r, short want, gint64 idle_end)
{
  struct pollfd p[3] = {
    { r->local, 0, 0 },
    { r->remote, want, 0 },
    { r->stop[0], POLLIN, 0 },
  };
  gint64 left = (idle_end - g_get_monotonic_time ()) / 1000;

  if (!r->up.eof && r->up.len == 0)
    p[0].events |= POLLIN;
  if (r->down.len > 0)
    p[0].events |= POLLOUT;
  if (left <= 0 || poll (p, 3, (int) MIN (left, G_MAXINT)) == 0)
    {
      rm_smtp_relay_fail (r, "nothing moved for %d s", r->idle_ms / 1000);
      return FALSE;
    }
  return p[2].revents == 0;
}

static void
rm_smtp_relay_pump (RmSmtpRelay *r)
{
  gint64 idle_end = g_get_monotonic_time () + (gint64) r->idle_ms * 1000;

  for (;;)
    {
      gboolean moved = FALSE;
      short want = 0;

      if (!rm_smtp_relay_from_local (r, &r->up, &moved)
          || !rm_smtp_relay_to_remote (r, &r->up, &want, &moved)
          || !rm_smtp_relay_from_remote (r, &r->down, &want, &moved)
          || !rm_smtp_relay_to_local (r, &r->down, &moved))
        return;
      if (r->up.eof && r->up.len == 0)
        {
          SSL_shutdown (r->ssl);
          return;
        }
      if (r->down.eof && r->down.len == 0)
        return;
      if (moved)
        idle_end = g_get_monotonic_time () + (gint64) r->idle_ms * 1000;
      else if (!rm_smtp_relay_wait (r, want, idle_end))
        return;
    }
}

static gpointer
rm_smtp_relay_main (gpointer data)
{
  RmSmtpRelay *r = data;

  if (rm_smtp_relay_accept (r))
    rm_smtp_relay_pump (r);
  if (r->local >= 0)
    close (r->local);
  r->local = -1;
  if (r->listener >= 0)
    close (r->listener);
  r->listener = -1;
  SSL_free (r->ssl);
  r->ssl = NULL;
  close (r->remote);
  r->remote = -1;
  ERR_clear_error ();
  OPENSSL_thread_stop ();
  return NULL;
}

static int
rm_smtp_relay_listen (unsigned *port)
{
  struct sockaddr_in sin = { .sin_family = AF_INET };
  socklen_t len = sizeof sin;
  int fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

  if (fd < 0)
    return -1;
  sin.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  if (bind (fd, (struct sockaddr *) &sin, sizeof sin) < 0
      || listen (fd, 1) < 0
      || getsockname (fd, (struct sockaddr *) &sin, &len) < 0)
    {
      int saved = errno;

      close (fd);
      errno = saved;
      return -1;
    }
  *port = ntohs (sin.sin_port);
  return fd;
}

/* Starts the thread with every signal blocked, so that SIGALRM and the
 * like reach the thread running libESMTP. */
static GThread *
rm_smtp_relay_spawn (RmSmtpRelay *r, GError **error)
{
  sigset_t all, old;
  GThread *thread;

  sigfillset (&all);
  pthread_sigmask (SIG_BLOCK, &all, &old);
  thread = g_thread_try_new ("rm-smtp-relay", rm_smtp_relay_main, r, error);
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  return thread;
}

static void
rm_smtp_relay_free (RmSmtpRelay *r)
{
  if (r->listener >= 0)
    close (r->listener);
  if (r->stop[0] >= 0)
    close (r->stop[0]);
  if (r->stop[1] >= 0)
    close (r->stop[1]);
  g_mutex_clear (&r->lock);
  g_cond_clear (&r->changed);
  g_free (r->error);
  g_free (r);
}

RmSmtpRelay *
rm_smtp_relay_start (SSL *ssl, int fd, unsigned accept_s, unsigned idle_s,
                     GError **error)
{
  RmSmtpRelay *r = g_new0 (RmSmtpRelay, 1);
  int one = 1;

  r->local = r->stop[0] = r->stop[1] = -1;
  r->accept_ms = (int) accept_s * 1000;
  r->idle_ms = (int) idle_s * 1000;
  g_mutex_init (&r->lock);
  g_cond_init (&r->changed);
  r->listener = rm_smtp_relay_listen (&r->port);
  if (r->listener < 0 || pipe2 (r->stop, O_CLOEXEC | O_NONBLOCK) < 0)
    {
      g_set_error (error, RM_SMTP_TLS_ERROR, RM_SMTP_TLS_ERROR_RELAY,
                   "cannot open the local relay: %s", g_strerror (errno));
      rm_smtp_relay_free (r);
      return NULL;
    }
  setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  r->ssl = ssl;
  r->remote = fd;
  r->thread = rm_smtp_relay_spawn (r, error);
  if (r->thread == NULL)
    {
      rm_smtp_relay_free (r);
      return NULL;
    }
  return r;
}

unsigned
rm_smtp_relay_port (const RmSmtpRelay *relay)
{
  return relay->port;
}

void
rm_smtp_relay_expect (RmSmtpRelay *relay, int client_fd)
{
  struct sockaddr_in mine = { .sin_family = AF_UNSPEC };
  struct sockaddr_in peer;
  socklen_t len = sizeof mine;
  socklen_t peer_len = sizeof peer;

  if (client_fd < 0
      || getsockname (client_fd, (struct sockaddr *) &mine, &len) < 0
      || getpeername (client_fd, (struct sockaddr *) &peer, &peer_len) < 0
      || peer.sin_family != AF_INET
      || peer.sin_addr.s_addr != htonl (INADDR_LOOPBACK)
      || ntohs (peer.sin_port) != relay->port)
    mine.sin_family = AF_UNSPEC;
  g_mutex_lock (&relay->lock);
  relay->expected = mine;
  relay->expected_set = TRUE;
  g_cond_broadcast (&relay->changed);
  g_mutex_unlock (&relay->lock);
}

char *
rm_smtp_relay_finish (RmSmtpRelay *relay)
{
  char *error;
  ssize_t n;

  g_mutex_lock (&relay->lock);
  relay->stopping = TRUE;
  g_cond_broadcast (&relay->changed);
  g_mutex_unlock (&relay->lock);
  do
    n = write (relay->stop[1], "x", 1);
  while (n < 0 && errno == EINTR);
  g_thread_join (relay->thread);
  error = g_steal_pointer (&relay->error);
  rm_smtp_relay_free (relay);
  return error;
}
