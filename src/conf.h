/* The configuration file (GKeyFile / INI), parsed into typed values.
 *
 * rm_config_load() validates every value. Errors name the file, the group
 * and the key: "FILE: [server a] port: not a number: x". All problems of
 * a file are reported together, one per line, in one RM_ERROR_CONFIG.
 * The keys, their defaults and their meaning are in doc/configuration.md.
 */
#ifndef RM_CONF_H
#define RM_CONF_H

#include <glib.h>

#include <rampmail/plugin.h>

#include "cmdline.h"

/* How a server's sending is paced and warmed up; see doc/warmup.md. Set in
 * [rampmail] for every server, in a server group for that server. */
typedef struct {
  char *warmup;        /* warmup plugin: "ramp" (default) or "none" */
  GArray *schedule;    /* explicit daily allowances (guint), day 1
                           * first, or NULL for start/growth/cap */
  guint start;         /* day-1 allowance; default 20 */
  double growth;       /* factor from one ramp day to the next; 1.3 */
  guint cap;           /* the allowance it holds at; default 500 */
  double min_share;    /* share of a day's allowance that must be sent
                           * for the day to count as a ramp day; 0.5 */
  guint restart_after; /* days without sending that restart the ramp;
                           * default 7 */
  guint min_gap;       /* seconds between two messages; 0: off */
  double hourly_share; /* share of the day's allowance per hour; 0: off */
} RmRampConf;

typedef enum {
  RM_FROM_KEEP = 0, /* keep the message's From and envelope sender */
  RM_FROM_ACCOUNT,  /* send as the account (user): envelope sender
                           * and From are set to it */
} RmFromPolicy;

typedef struct {
  char *name;   /* NAME of [server NAME] */
  char *preset; /* "gmail" or NULL */
  char *host;
  unsigned port;         /* default 25; 465 for tls = implicit */
  RmTlsMode tls;         /* default RM_TLS_STARTTLS */
  char *tls_ca_file;     /* NULL: the system trust store */
  char *tls_fingerprint; /* "sha256:HEX" or NULL */
  gboolean tls_verify;   /* default TRUE */
  char *user;            /* NULL: no authentication */
  char *password_file;   /* one of these two with user */
  char *password_command;
  RmFromPolicy from;        /* default RM_FROM_KEEP */
  guint max_rcpts;          /* recipients per message; 0: no limit */
  char **sender_domains;    /* domains whose mail it may carry (lowercase),
                           * or NULL for any */
  char *transport;          /* plugin name, default "smtp" */
  unsigned connect_timeout; /* seconds, default 30 */
  unsigned timeout;         /* seconds, default 60 */
  RmRampConf ramp;
} RmServerConf;

typedef struct {
  char *file;           /* the path it was read from */
  char *queue_dir;      /* default RM_LOCALSTATEDIR/spool/rampmail */
  char *state_dir;      /* default RM_LOCALSTATEDIR/lib/rampmail */
  char *plugin_dir;     /* default RM_PLUGINDIR */
  char *domain;         /* qualifies local names; default: host's FQDN */
  char *hostname;       /* EHLO and Message-ID name; default: FQDN */
  char *sender;         /* fixed envelope sender, NULL if not set */
  char *aliases;        /* aliases file; default RM_SYSCONFDIR/aliases */
  char *selector;       /* default "balanced" */
  char *timezone;       /* day boundary; NULL for the system's */
  char *log_file;       /* NULL: syslog (mail facility) */
  RmDelivery delivery;  /* default RM_DELIVERY_BACKGROUND */
  guint queue_lifetime; /* seconds a message may keep failing; 5 days */
  guint retry_min;      /* first retry delay, seconds; 2 minutes */
  guint retry_max;      /* longest retry delay, seconds; 1 hour */
  RmRampConf ramp;      /* defaults for every server */
  GPtrArray *servers;   /* RmServerConf *, in file order, >= 1 */
} RmConfig;

/* The default path, RM_SYSCONFDIR "/rampmail.conf". */
const char *rm_config_default_path (void);

/* Loads and validates path. Relative paths inside the file are relative
 * to the file's folder. */
RmConfig *rm_config_load (const char *path, GError **error);
void rm_config_free (RmConfig *config);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RmConfig, rm_config_free)

#endif
