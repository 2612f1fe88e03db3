/* The sendmail command line.
 *
 * rm_cmdline_parse() turns argv into RmOptions without touching files,
 * the network or the environment. The name the program was called by
 * picks the mode first: "mailq" lists the queue (-bp), "newaliases"
 * checks the aliases (-bi); any other name is sendmail (-bm).
 *
 * Every flag that is accepted but has no effect is listed once, in the
 * table in cmdline.c; --help prints that list and doc/compatibility.md
 * repeats it.
 */
#ifndef RM_CMDLINE_H
#define RM_CMDLINE_H

#include <glib.h>

typedef enum {
  RM_MODE_SEND = 0,     /* -bm (default): read a message and send it */
  RM_MODE_QUEUE_RUN,    /* -q[interval] */
  RM_MODE_LIST_QUEUE,   /* -bp, mailq */
  RM_MODE_ALIASES,      /* -bi, newaliases */
  RM_MODE_SMTP_STDIO,   /* -bs: SMTP on standard input and output */
  RM_MODE_CHECK_CONFIG, /* --check-config */
  RM_MODE_TEST_SERVERS, /* --test [SERVER...]: check each server */
  RM_MODE_DELETE,       /* --delete ID...: remove queue entries */
  RM_MODE_STATUS,       /* --status: servers and queue */
  RM_MODE_HELP,         /* --help */
  RM_MODE_VERSION,      /* --version, -bV */
} RmMode;

typedef enum {
  RM_DELIVERY_DEFAULT = 0, /* whatever the configuration says */
  RM_DELIVERY_INTERACTIVE, /* -odi: deliver before exiting */
  RM_DELIVERY_BACKGROUND,  /* -odb: return at once, deliver in a child */
  RM_DELIVERY_QUEUE,       /* -odq: only queue */
} RmDelivery;

typedef enum {
  RM_BODY_DEFAULT = 0,  /* no -B: detect from the content */
  RM_BODY_7BIT_ARG,     /* -B7BIT */
  RM_BODY_8BITMIME_ARG, /* -B8BITMIME */
} RmBodyArg;

typedef struct {
  RmMode mode;
  gboolean read_recipients; /* -t */
  gboolean ignore_dots;     /* -i, -oi */
  char *sender;             /* -f/-r as given, NULL if absent */
  char *full_name;          /* -F, NULL if absent */
  RmBodyArg body;           /* -B */
  char *config_file;        /* -C, NULL for the default */
  gboolean verbose;         /* -v */
  RmDelivery delivery;      /* -od? */
  char *notify;             /* -N, kept for later DSN support */
  char *dsn_ret;            /* -R */
  char *envid;              /* -V */
  char *queue_interval;     /* -q30m: "30m"; NULL for a single run */
  char *queue_id;           /* -qIID: deliver only this entry */
  char *send_to;            /* --test --send-to ADDR */
  GPtrArray *recipients;    /* raw recipient arguments (char *); the
                               * queue ids with --delete, the server
                               * names with --test */
  GPtrArray *ignored;       /* flags accepted and ignored, as given */
} RmOptions;

/* Fills opts (which the caller zero-initialises) from argv. argv[0] picks
 * the mode as described above. An unknown flag, a flag missing its
 * argument, or a bad -B/-od/-R value gives RM_ERROR_USAGE naming the
 * flag. Recipient syntax is not checked here. */
gboolean rm_cmdline_parse (int argc, char **argv, RmOptions *opts,
                           GError **error);

/* Frees what rm_cmdline_parse() allocated and zeroes opts. */
void rm_options_clear (RmOptions *opts);

/* The --help text, ending with a newline. */
const char *rm_cmdline_help (void);

/* Seconds in a -q interval such as "30m", "1h", "90s" or "2h30m"; 0 with
 * RM_ERROR_USAGE when it does not parse. */
guint rm_cmdline_interval_seconds (const char *text, GError **error);

#endif
