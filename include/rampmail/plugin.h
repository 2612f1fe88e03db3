/* rampmail plugin interface.
 *
 * This is the only header a plugin includes from rampmail. A plugin is a
 * libltdl module in the package's plugin directory that exports one symbol,
 * `rampmail_plugin`, a const RmPluginInfo. rampmail refuses a module whose
 * abi differs from RM_PLUGIN_ABI or whose kind is not the one the
 * configuration asked for, and names the module and its path.
 *
 * Plugins may use GLib. Strings handed to a plugin belong to rampmail and
 * stay valid for the duration of the call; results the plugin returns are
 * described at each slot.
 */
#ifndef RAMPMAIL_PLUGIN_H
#define RAMPMAIL_PLUGIN_H

#include <stddef.h>
#include <glib.h>

G_BEGIN_DECLS

/* Bumped whenever a structure below changes shape. */
#define RM_PLUGIN_ABI 2

typedef enum {
  RM_PLUGIN_TRANSPORT = 1,
  RM_PLUGIN_SELECTOR = 2,
  RM_PLUGIN_WARMUP = 3,
} RmPluginKind;

/* ---- transport ---------------------------------------------------------- */

typedef enum {
  RM_TLS_NONE = 0, /* plaintext (only when configured so) */
  RM_TLS_STARTTLS, /* STARTTLS, required: no plaintext fallback */
  RM_TLS_IMPLICIT, /* TLS from the first byte (SMTPS, port 465) */
} RmTlsMode;

/* One configured server, as the transport sees it. */
typedef struct {
  const char *name; /* the NAME of [server NAME] */
  const char *host; /* host name or IP literal; also the name the
                            * certificate must carry, and the SNI */
  unsigned port;
  const char *helo;         /* name for EHLO and Message-Id, an FQDN */
  unsigned connect_timeout; /* seconds to wait for the TCP connection */
  unsigned timeout;         /* seconds to wait for any reply */
  RmTlsMode tls;
  const char *tls_ca_file;     /* PEM file of trusted CAs; NULL: the system
                            * store */
  const char *tls_fingerprint; /* "sha256:HEX" of the server's certificate
                                * (DER), or NULL; when set it must match */
  gboolean tls_verify;         /* FALSE only when configured explicitly */
  const char *user;            /* NULL: no authentication */
  const char *password;        /* with user; never logged */
} RmServer;

/* Outcome of one recipient or of one whole attempt. */
typedef enum {
  RM_RESULT_PENDING = 0, /* not attempted / not reached */
  RM_RESULT_OK,       /* the server accepted it (2xx after the final dot) */
  RM_RESULT_TEMPFAIL, /* 4xx, refused connection, timeout: try later */
  RM_RESULT_PERMFAIL, /* 5xx: the server will never take it */
  RM_RESULT_UNKNOWN,  /* connection lost after the final dot: the server
                          * may have taken it (RFC 1047) */
} RmResultCode;

typedef struct {
  const char *address; /* RFC 5321 mailbox, without angle brackets */
  RmResultCode result; /* filled in by the transport */
  int smtp_code;       /* the server's reply code, 0 if none */
  char *reply;         /* the server's reply text, g_malloc'd by the
                            * transport, freed by rampmail; may be NULL */
} RmRecipient;

/* Body type declared in MAIL FROM. */
typedef enum {
  RM_BODY_7BIT = 0,
  RM_BODY_8BITMIME,
} RmBodyType;

/* Result of a whole attempt, for what the recipients do not say. */
typedef struct {
  RmResultCode result; /* the worst outcome that applies to all
                            * recipients still PENDING */
  int smtp_code;
  char *reply; /* g_malloc'd by the transport or NULL */
} RmAttempt;

typedef struct RmMessage RmMessage;

/* Called by a transport as soon as the outcome of msg is final (the server
 * answered its final dot, or refused it), while the session goes on with
 * the next message: rampmail records the outcome at once, so that a crash
 * later in the session cannot make it send msg again. attempt is the
 * message's element of the attempt array. */
typedef void (*RmMessageDone) (RmMessage *msg, RmAttempt *attempt,
                               gpointer user_data);

/* One message to send. The data file holds the complete message in wire
 * form except for dot-stuffing: CRLF line ends, no line over 998 octets,
 * no NUL, final CRLF present. The transport does the dot-stuffing (or has
 * its library do it). */
struct RmMessage {
  const char *queue_id; /* for log lines */
  const char *sender;   /* envelope sender; "" for the null sender */
  RmRecipient *rcpts;
  size_t n_rcpts;
  RmBodyType body;
  int data_fd;        /* readable, seekable; the transport may seek */
  gint64 size;        /* octets in the data file */
  RmMessageDone done; /* may be NULL; called at most once, and then
                            * the transport does not touch the message,
                            * its recipients or its attempt again */
  gpointer done_data; /* for done and started */
  void (*started) (RmMessage *msg, gpointer user_data);
  /* may be NULL; called once, just before the
                            * first octet of the message's data is sent:
                            * from then on a crash leaves the outcome
                            * unknown */
  gboolean needs_7bit; /* set by the transport (ABI 2): the message is
                        * 8-bit, the server does not offer 8BITMIME and
                        * nothing of it was sent; rampmail may offer a
                        * 7-bit copy to the same server */
};

typedef struct {
  /* Send the messages over one connection to srv. For each message, set
   * every recipient's result; recipients the transport never reached keep
   * RM_RESULT_PENDING and are judged by attempt[i]. A permanent refusal of
   * the whole message (a 5xx to MAIL, or after DATA) goes in attempt[i]
   * with the recipients left PENDING: it is the server's answer to this
   * message, and another server may take it. Calls each message's
   * done callback, if any, once its outcome is final; for a message whose
   * callback was not called, the results are read after send returns.
   * Returns FALSE (with error set) only if nothing could be attempted;
   * then every message is a temporary failure. attempt has n_msgs
   * elements. */
  gboolean (*send) (const RmServer *srv, RmMessage *const *msgs,
                    size_t n_msgs, RmAttempt *attempt, GError **error);

  /* Connect, greet and say QUIT, writing a human-readable report of each
   * step to report. Returns TRUE if the server is usable. */
  gboolean (*verify) (const RmServer *srv, GString *report, GError **error);
} RmTransportOps;

/* ---- selector ----------------------------------------------------------- */

/* One server that may send this message now. */
typedef struct {
  const char *name;
  gint64 today; /* messages assigned to it in the current day */
} RmCandidate;

typedef struct {
  /* Choose one of the n (n >= 1) candidates; return its index. rnd is a
   * source of uniform random numbers for tie-breaks. Runs inside the state
   * store's transaction, so it must be quick and must not block. */
  size_t (*choose) (const RmCandidate *cands, size_t n, GRand *rnd);
} RmSelectorOps;

/* ---- warmup --------------------------------------------------------------- */

/* How one server ramps up; rampmail fills it from the configuration. */
typedef struct {
  const guint *schedule; /* explicit allowances for ramp days 1, 2, ...
                            * (the last one holds), or NULL */
  size_t schedule_len;
  guint start;         /* without a schedule: day 1 allowance, */
  double growth;       /* times growth for each ramp day after, */
  guint cap;           /* up to cap */
  double min_share;    /* a day counts as a ramp day only if the
                            * server sent at least this share of that
                            * day's allowance */
  guint restart_after; /* this many days without sending restart the
                            * ramp at day 1 */
} RmRampParams;

/* One past day on which a server sent: its date as a day number (days
 * since 1 January of year 1, as GDate's Julian day) and the recipients. */
typedef struct {
  guint32 day;
  guint64 rcpts;
} RmSendDay;

typedef struct {
  /* The allowance (recipients) of a server on day today, from its sending
   * history: the days before today on which it sent, oldest first. Sets
   * *ramp_day to today's ramp day (1 on a first or restarted day). */
  guint64 (*allowance) (const RmRampParams *params, const RmSendDay *history,
                        size_t n_days, guint32 today, guint *ramp_day);
} RmWarmupOps;

/* ---- module descriptor -------------------------------------------------- */

typedef struct {
  unsigned abi; /* RM_PLUGIN_ABI when the plugin was built */
  RmPluginKind kind;
  const char *name; /* must equal the module's file name */
  const void *ops;  /* RmTransportOps, RmSelectorOps or
                            * RmWarmupOps */
} RmPluginInfo;

/* The symbol every plugin exports, and how to export it:
 *   RM_PLUGIN_EXPORT const RmPluginInfo rampmail_plugin = { ... }; */
#define RM_PLUGIN_SYMBOL "rampmail_plugin"
#define RM_PLUGIN_EXPORT __attribute__ ((visibility ("default")))

G_END_DECLS

#endif /* RAMPMAIL_PLUGIN_H */
