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

#include "cmdline.h"

typedef struct {
  char *name;             /* NAME of [server NAME] */
  char *host;
  unsigned port;          /* default 25 */
  char *tls;              /* only "none" until TLS arrives */
  char *transport;        /* plugin name, default "smtp" */
  unsigned connect_timeout; /* seconds, default 30 */
  unsigned timeout;       /* seconds, default 60 */
} RmServerConf;

typedef struct {
  char *file;             /* the path it was read from */
  char *queue_dir;        /* default RM_LOCALSTATEDIR/spool/rampmail */
  char *state_dir;        /* default RM_LOCALSTATEDIR/lib/rampmail */
  char *plugin_dir;       /* default RM_PLUGINDIR */
  char *domain;           /* qualifies local names; default: host's FQDN */
  char *hostname;         /* EHLO and Message-ID name; default: FQDN */
  char *sender;           /* fixed envelope sender, NULL if not set */
  char *aliases;          /* aliases file; default RM_SYSCONFDIR/aliases */
  char *selector;         /* default "balanced" */
  char *timezone;         /* day boundary; NULL for the system's */
  char *log_file;         /* NULL: syslog (mail facility) */
  RmDelivery delivery;    /* default RM_DELIVERY_BACKGROUND */
  guint queue_lifetime;   /* seconds a message may keep failing; 5 days */
  guint retry_min;        /* first retry delay, seconds; 2 minutes */
  guint retry_max;        /* longest retry delay, seconds; 1 hour */
  GPtrArray *servers;     /* RmServerConf *, in file order, >= 1 */
} RmConfig;

/* The default path, RM_SYSCONFDIR "/rampmail.conf". */
const char *rm_config_default_path (void);

/* Loads and validates path. Relative paths inside the file are relative
 * to the file's folder. */
RmConfig *rm_config_load (const char *path, GError **error);
void rm_config_free (RmConfig *config);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RmConfig, rm_config_free)

#endif
