/* Declarations shared by the files of the smtp transport plugin:
 *   smtp.c       send() through libESMTP, settings, the module descriptor
 *   smtp-tls.c   TLS contexts and checks, the implicit-TLS relay
 *   smtp-conn.c  SMTP over a socket of our own, and verify()
 */
#ifndef RM_SMTP_H
#define RM_SMTP_H

#include <signal.h>
#include <sys/socket.h>

#include <glib.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include <rampmail/plugin.h>

#define RM_SMTP_DEFAULT_CONNECT_TIMEOUT 30
#define RM_SMTP_DEFAULT_TIMEOUT 300
#define RM_SMTP_LINE_MAX 4096

#define RM_SMTP_ERROR (rm_smtp_error_quark ())

typedef enum {
  RM_SMTP_ERROR_CONFIG,   /* the server's settings cannot work */
  RM_SMTP_ERROR_CONNECT,  /* no usable connection */
  RM_SMTP_ERROR_PROTOCOL, /* the server refused or misbehaved */
  RM_SMTP_ERROR_LIBRARY,  /* libESMTP refused a call */
  RM_SMTP_ERROR_TLS,      /* no secure connection */
  RM_SMTP_ERROR_AUTH,     /* no authenticated session */
} RmSmtpErrorCode;

/* ---- smtp.c ------------------------------------------------------------- */

GQuark rm_smtp_error_quark (void);

/* value, or fallback when value is 0, in seconds. */
unsigned rm_smtp_seconds (unsigned value, unsigned fallback);
gboolean rm_smtp_check_server (const RmServer *srv, GError **error);
void rm_smtp_sigpipe_ignore (struct sigaction *old);

/* ---- smtp-conn.c -------------------------------------------------------- */

/* A connection of our own: verify(), and the TLS leg of implicit TLS. */
typedef struct {
  int fd;
  SSL *ssl; /* after the TLS handshake */
  int timeout_ms;
  gboolean broken; /* an I/O error or a timeout happened */
  char buf[RM_SMTP_LINE_MAX];
  size_t len;
} RmSmtpConn;

/* Connects c->fd (non-blocking) to srv within its connect timeout,
 * writing a line per address tried to report. */
gboolean rm_smtp_conn_open (RmSmtpConn *c, const RmServer *srv,
                            GString *report, GError **error);

/* Parses a reply line "CODE-text" or "CODE text". */
gboolean rm_smtp_parse_line (const char *line, int *code, gboolean *last,
                             const char **text);

/* Appends the text of one reply line to s, without control characters
 * and without a repeated enhanced status code; s stays bounded. */
void rm_smtp_reply_append (GString *s, const char *text);

gboolean rm_smtp_verify (const RmServer *srv, GString *report,
                         GError **error);

/* ---- smtp-tls.c --------------------------------------------------------- */

/* Every TLS connection of the plugin, libESMTP's STARTTLS as well as our
 * own, uses an SSL_CTX made by rm_smtp_tls_context for one session. Its
 * callbacks record what the handshake saw in an RmSmtpTls, which must
 * outlive the context. */

/* What one session's handshake saw. */
typedef struct {
  const RmServer *srv;
  gboolean ip_literal; /* srv->host is an IP address */
  guint8 pin[SHA256_DIGEST_LENGTH];
  gboolean has_pin;      /* srv->tls_fingerprint was given */
  gboolean pin_mismatch; /* the certificate did not match it */
  long verify_error;     /* X509_V_OK or the first verification error */
  X509 *peer;            /* the server's certificate, or NULL */
  char *alert;           /* the fatal TLS alert sent or received */
  gboolean done;         /* a handshake completed */
} RmSmtpTls;

/* Makes the context for one session with srv, tls recording. NULL with
 * error set when the settings cannot work (pin syntax, CA file). */
SSL_CTX *rm_smtp_tls_context (RmSmtpTls *tls, const RmServer *srv,
                              GError **error);
void rm_smtp_tls_clear (RmSmtpTls *tls);

/* Whether cert carries the configured host name or IP address. */
gboolean rm_smtp_tls_name_ok (const RmSmtpTls *tls, X509 *cert);

/* Why the handshake failed, e.g. "certificate verify failed: certificate
 * has expired"; a hint for the user, or NULL. Both g_malloc'd. */
char *rm_smtp_tls_failure (const RmSmtpTls *tls);
char *rm_smtp_tls_hint (const RmSmtpTls *tls);

/* Appends the "TLS:", "certificate:" and "fingerprint:" lines. */
void rm_smtp_tls_report (const RmSmtpTls *tls, SSL *ssl, GString *report);

/* The TLS handshake on the connected non-blocking socket fd, within
 * timeout_ms; the SSL uses fd but does not own it. */
SSL *rm_smtp_tls_connect (SSL_CTX *ctx, int fd, int timeout_ms,
                          GError **error);

/* Reads up to len octets: > 0, 0 at the end, -1 with errno set. */
gssize rm_smtp_tls_read (SSL *ssl, int fd, char *buf, size_t len,
                         int timeout_ms);
gboolean rm_smtp_tls_write (SSL *ssl, int fd, const char *buf, size_t len,
                            int timeout_ms);

/* Polls fd for events until the monotonic deadline (usec); FALSE with
 * errno ETIMEDOUT when it passes. */
gboolean rm_smtp_poll_until (int fd, short events, gint64 deadline);

gboolean rm_smtp_is_loopback (const struct sockaddr *sa);

/* ---- the implicit-TLS relay --------------------------------------------- */

typedef struct RmSmtpRelay RmSmtpRelay;

/* Opens a listener on 127.0.0.1 and starts the relay thread between it
 * and the TLS connection ssl on fd, of which it takes ownership on
 * success. accept_s bounds the wait for libESMTP, idle_s a silence. */
RmSmtpRelay *rm_smtp_relay_start (SSL *ssl, int fd, unsigned accept_s,
                                  unsigned idle_s, GError **error);
unsigned rm_smtp_relay_port (const RmSmtpRelay *relay);

/* Names libESMTP's socket (client_fd, connected to the listener); the
 * relay serves only the connection coming from it. -1: not found. */
void rm_smtp_relay_expect (RmSmtpRelay *relay, int client_fd);

/* Stops and joins the thread, closes everything and frees relay; returns
 * why the relay ended early (g_malloc'd), or NULL. */
char *rm_smtp_relay_finish (RmSmtpRelay *relay);

#endif /* RM_SMTP_H */
