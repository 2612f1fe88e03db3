/* The configuration file, read with GKeyFile and checked key by key.
 *
 * Each group has a table of its keys (main_keys, server_keys) that says
 * how a value is checked and where it goes. Every problem becomes one line
 * "FILE: [group] key: problem"; all lines of a file come back together in
 * one RM_ERROR_CONFIG, so an administrator fixes a file in one pass.
 */
#include "config.h"

#include <netdb.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "conf.h"
#include "errors.h"

#define DEFAULT_QUEUE_DIR RM_LOCALSTATEDIR "/spool/rampmail"
#define DEFAULT_STATE_DIR RM_LOCALSTATEDIR "/lib/rampmail"
#define DEFAULT_ALIASES RM_SYSCONFDIR "/aliases"
#define SERVER_PREFIX "server"

/* ---- the keys -------------------------------------------------------------- */

typedef enum {
  KIND_PATH,        /* a file or folder; relative to the file's folder */
  KIND_PLUGIN,      /* a plugin name: [a-z0-9_-]+ */
  KIND_DOMAIN,      /* a DNS name */
  KIND_SENDER,      /* local@domain */
  KIND_TIMEZONE,    /* an identifier GLib knows, such as Europe/Paris */
  KIND_DELIVERY,    /* interactive, background or queue */
  KIND_HOST,        /* a host name or IP address */
  KIND_PORT,        /* 1 to 65535 */
  KIND_SECONDS,     /* 1 to 3600 */
  KIND_TLS,         /* none, starttls or implicit */
  KIND_DURATION,    /* 90s, 5m, 2h, 5d, 1h30m; a bare number is seconds */
  KIND_TEXT,        /* any text without control characters (user, command) */
  KIND_BOOL,        /* yes/no, true/false, on/off, 1/0 */
  KIND_FINGERPRINT, /* sha256:HEX, colons allowed between the octets */
  KIND_PRESET,      /* gmail */
  KIND_FROM,        /* keep or account */
  KIND_COUNT,       /* 1 to 1000000 */
  KIND_COUNT0,      /* 0 to 86400 */
  KIND_SHARE,       /* a fraction, 0 < x <= 1 */
  KIND_SHARE0,      /* a fraction, 0 <= x <= 1; 0 turns it off */
  KIND_LIMIT0,      /* 0 to 1000000; 0 turns it off */
  KIND_GROWTH,      /* a factor, 1 < x <= 10 */
  KIND_DAYS,        /* 1 to 365 */
  KIND_SCHEDULE,    /* daily allowances: "20, 40, 80" */
  KIND_DOMAINS,     /* domain names: "example.com, example.org" */
} KeyKind;

typedef struct {
  const char *name;
  KeyKind kind;
  gsize offset; /* of the field in RmConfig or RmServerConf */
} KeySpec;

static const KeySpec main_keys[] = {
  { "queue_dir", KIND_PATH, offsetof (RmConfig, queue_dir) },
  { "state_dir", KIND_PATH, offsetof (RmConfig, state_dir) },
  { "plugin_dir", KIND_PATH, offsetof (RmConfig, plugin_dir) },
  { "domain", KIND_DOMAIN, offsetof (RmConfig, domain) },
  { "hostname", KIND_DOMAIN, offsetof (RmConfig, hostname) },
  { "sender", KIND_SENDER, offsetof (RmConfig, sender) },
  { "aliases", KIND_PATH, offsetof (RmConfig, aliases) },
  { "selector", KIND_PLUGIN, offsetof (RmConfig, selector) },
  { "timezone", KIND_TIMEZONE, offsetof (RmConfig, timezone) },
  { "log_file", KIND_PATH, offsetof (RmConfig, log_file) },
  { "delivery_mode", KIND_DELIVERY, offsetof (RmConfig, delivery) },
  { "queue_lifetime", KIND_DURATION, offsetof (RmConfig, queue_lifetime) },
  { "retry_min", KIND_DURATION, offsetof (RmConfig, retry_min) },
  { "retry_max", KIND_DURATION, offsetof (RmConfig, retry_max) },
#define RAMP_KEYS(type)                                                      \
  { "warmup", KIND_PLUGIN, offsetof (type, ramp.warmup) },                   \
      { "warmup_schedule", KIND_SCHEDULE, offsetof (type, ramp.schedule) },  \
      { "warmup_start", KIND_COUNT, offsetof (type, ramp.start) },           \
      { "warmup_growth", KIND_GROWTH, offsetof (type, ramp.growth) },        \
      { "warmup_cap", KIND_COUNT, offsetof (type, ramp.cap) },               \
      { "warmup_min_share", KIND_SHARE, offsetof (type, ramp.min_share) },   \
      { "warmup_restart_after", KIND_DAYS,                                   \
        offsetof (type, ramp.restart_after) },                               \
      { "min_gap", KIND_COUNT0, offsetof (type, ramp.min_gap) },             \
  {                                                                          \
    "hourly_share", KIND_SHARE0, offsetof (type, ramp.hourly_share)          \
  }
  RAMP_KEYS (RmConfig),
};

static const KeySpec server_keys[] = {
  { "preset", KIND_PRESET, offsetof (RmServerConf, preset) },
  { "host", KIND_HOST, offsetof (RmServerConf, host) },
  { "port", KIND_PORT, offsetof (RmServerConf, port) },
  { "tls", KIND_TLS, offsetof (RmServerConf, tls) },
  { "tls_ca_file", KIND_PATH, offsetof (RmServerConf, tls_ca_file) },
  { "tls_fingerprint", KIND_FINGERPRINT,
    offsetof (RmServerConf, tls_fingerprint) },
  { "tls_verify", KIND_BOOL, offsetof (RmServerConf, tls_verify) },
  { "user", KIND_TEXT, offsetof (RmServerConf, user) },
  { "password_file", KIND_PATH, offsetof (RmServerConf, password_file) },
  { "password_command", KIND_TEXT,
    offsetof (RmServerConf, password_command) },
  { "from", KIND_FROM, offsetof (RmServerConf, from) },
  { "max_rcpts", KIND_LIMIT0, offsetof (RmServerConf, max_rcpts) },
  { "sender_domains", KIND_DOMAINS, offsetof (RmServerConf, sender_domains) },
  { "transport", KIND_PLUGIN, offsetof (RmServerConf, transport) },
  { "connect_timeout", KIND_SECONDS,
    offsetof (RmServerConf, connect_timeout) },
  { "timeout", KIND_SECONDS, offsetof (RmServerConf, timeout) },
  RAMP_KEYS (RmServerConf),
};

/* ---- the loader ------------------------------------------------------------ */

typedef struct {
  const char *file; /* the path as given, for messages */
  char *dir;        /* the file's folder, absolute */
  GKeyFile *keys;
  GPtrArray *problems; /* char *, one line each */
} Loader;

static void problem (Loader *ld, const char *group, const char *key,
                     const char *format, ...) G_GNUC_PRINTF (4, 5);

static char *shown (const char *text);

/* Adds "FILE: [group] key: what", "FILE: [group]: what" or "FILE: what". */
static void
problem (Loader *ld, const char *group, const char *key, const char *format,
         ...)
{
  g_autofree char *what = NULL;
  g_autofree char *safe_group = group != NULL ? shown (group) : NULL;
  g_autofree char *safe_key = key != NULL ? shown (key) : NULL;
  va_list ap;

  va_start (ap, format);
  what = g_strdup_vprintf (format, ap);
  va_end (ap);

  if (group == NULL)
    g_ptr_array_add (ld->problems,
                     g_strdup_printf ("%s: %s", ld->file, what));
  else if (key == NULL)
    g_ptr_array_add (ld->problems, g_strdup_printf ("%s: [%s]: %s", ld->file,
                                                    safe_group, what));
  else
    g_ptr_array_add (ld->problems,
                     g_strdup_printf ("%s: [%s] %s: %s", ld->file, safe_group,
                                      safe_key, what));
}

/* text with control characters shown as \xHH, for messages. */
static char *
shown (const char *text)
{
  GString *out = g_string_new (NULL);

  for (const char *c = text; *c != '\0'; c++)
    if ((guchar) *c < 0x20 || *c == 0x7f)
      g_string_append_printf (out, "\\x%02x", (guchar) *c);
    else
      g_string_append_c (out, *c);
  return g_string_free (out, FALSE);
}

static gboolean
has_control (const char *text)
{
  for (const char *c = text; *c != '\0'; c++)
    if ((guchar) *c < 0x20 || *c == 0x7f)
      return TRUE;
  return FALSE;
}

static gboolean
is_plugin_name (const char *text)
{
  if (*text == '\0' || strlen (text) > 64)
    return FALSE;
  for (const char *c = text; *c != '\0'; c++)
    if (!g_ascii_islower (*c) && !g_ascii_isdigit (*c) && *c != '_'
        && *c != '-')
      return FALSE;
  return TRUE;
}

static gboolean
is_server_name (const char *text)
{
  if (*text == '\0')
    return FALSE;
  for (const char *c = text; *c != '\0'; c++)
    if (!g_ascii_isalnum (*c) && strchr ("._-", *c) == NULL)
      return FALSE;
  return TRUE;
}

/* Letters, digits and inner hyphens, 1-63 per label, 253 in all. */
static gboolean
is_domain (const char *text)
{
  gsize label = 0;

  if (*text == '\0' || strlen (text) > 253)
    return FALSE;
  for (const char *c = text;; c++)
    {
      if (*c == '.' || *c == '\0')
        {
          if (label == 0 || label > 63 || c[-1] == '-')
            return FALSE;
          if (*c == '\0')
            return TRUE;
          label = 0;
          continue;
        }
      if (!g_ascii_isalnum (*c) && (*c != '-' || label == 0))
        return FALSE;
      label++;
    }
}

/* A fixed sender: local@domain, nothing a header or a command could be
 * split at. Full address syntax is the address module's business. */
static gboolean
is_sender (const char *text)
{
  const char *at = strrchr (text, '@');

  for (const char *c = text; *c != '\0'; c++)
    if (g_ascii_isspace (*c) || strchr ("<>,", *c) != NULL)
      return FALSE;
  return at != NULL && at != text && at[1] != '\0' && !has_control (text);
}

static gboolean
is_time_zone (const char *text)
{
  GTimeZone *tz;
  gboolean known;

#if GLIB_CHECK_VERSION(2, 68, 0)
  tz = g_time_zone_new_identifier (text);
  known = tz != NULL;
#else
  tz = g_time_zone_new (text);
  known = strcmp (g_time_zone_get_identifier (tz), text) == 0;
#endif
  if (tz != NULL)
    g_time_zone_unref (tz);
  return known;
}

/* NULL if text is a whole number in [min, max], else the problem. */
static char *
parse_number (const char *text, guint min, guint max, guint *out)
{
  guint64 number = 0;

  for (const char *c = text; *c != '\0'; c++)
    {
      if (!g_ascii_isdigit (*c))
        {
          g_autofree char *safe = shown (text);
          return g_strdup_printf ("not a number: %s", safe);
        }
      if (number <= G_MAXUINT)
        number = number * 10 + (guint64) (*c - '0');
    }
  if (number < min || number > max)
    return g_strdup_printf ("out of range (%u to %u): %s", min, max, text);
  *out = (guint) number;
  return NULL;
}

/* NULL if text is a duration such as 90s, 5m, 2h30m or 5d (a bare number
 * is seconds) of 1 second to 365 days, else the problem. */
static char *
parse_duration (const char *text, guint *out)
{
  guint64 total = 0;
  const char *c = text;

  while (*c != '\0')
    {
      guint64 number = 0;
      guint64 unit = 1;

      if (!g_ascii_isdigit (*c))
        break;
      while (g_ascii_isdigit (*c) && number < G_MAXUINT)
        number = number * 10 + (guint64) (*c++ - '0');
      switch (*c)
        {
        case 's':
          unit = 1;
          c++;
          break;
        case 'm':
          unit = 60;
          c++;
          break;
        case 'h':
          unit = 3600;
          c++;
          break;
        case 'd':
          unit = 86400;
          c++;
          break;
        case '\0':
          break;
        default:
          c = "!";
          break;
        }
      total += number * unit;
    }
  if (*c != '\0' || *text == '\0' || total < 1 || total > 365 * 86400)
    {
      g_autofree char *safe = shown (text);

      return g_strdup_printf ("not a duration of 1s to 365d (such as 90s, "
                              "5m, 2h or 5d): %s",
                              safe);
    }
  *out = (guint) total;
  return NULL;
}

static char *
parse_tls (const char *value, RmTlsMode *field)
{
  g_autofree char *safe = NULL;

  if (strcmp (value, "none") == 0)
    *field = RM_TLS_NONE;
  else if (strcmp (value, "starttls") == 0)
    *field = RM_TLS_STARTTLS;
  else if (strcmp (value, "implicit") == 0)
    *field = RM_TLS_IMPLICIT;
  else
    {
      safe = shown (value);
      return g_strdup_printf ("invalid value: %s (use starttls, implicit "
                              "or none)",
                              safe);
    }
  return NULL;
}

static char *
parse_preset (const char *value, char **field)
{
  g_autofree char *safe = NULL;

  if (strcmp (value, "gmail") == 0)
    {
      g_free (*field);
      *field = g_strdup (value);
      return NULL;
    }
  safe = shown (value);
  return g_strdup_printf ("unknown preset: %s (known: gmail)", safe);
}

static char *
parse_from (const char *value, RmFromPolicy *field)
{
  g_autofree char *safe = NULL;

  if (strcmp (value, "keep") == 0)
    *field = RM_FROM_KEEP;
  else if (strcmp (value, "account") == 0)
    *field = RM_FROM_ACCOUNT;
  else
    {
      safe = shown (value);
      return g_strdup_printf ("invalid value: %s (use keep or account)",
                              safe);
    }
  return NULL;
}

static char *
parse_bool (const char *value, gboolean *field)
{
  static const char *const yes[] = { "yes", "true", "on", "1" };
  static const char *const no[] = { "no", "false", "off", "0" };
  g_autofree char *safe = NULL;

  for (gsize i = 0; i < G_N_ELEMENTS (yes); i++)
    {
      if (g_ascii_strcasecmp (value, yes[i]) == 0)
        {
          *field = TRUE;
          return NULL;
        }
      if (g_ascii_strcasecmp (value, no[i]) == 0)
        {
          *field = FALSE;
          return NULL;
        }
    }
  safe = shown (value);
  return g_strdup_printf ("invalid value: %s (use yes or no)", safe);
}

static char *
parse_fingerprint (const char *value, char **field)
{
  const char *hex = value;
  GString *clean = g_string_new ("sha256:");
  g_autofree char *safe = NULL;

  if (g_ascii_strncasecmp (hex, "sha256:", 7) == 0)
    hex += 7;
  for (; *hex != '\0'; hex++)
    if (g_ascii_isxdigit (*hex))
      g_string_append_c (clean, g_ascii_tolower (*hex));
    else if (*hex != ':')
      break;
  if (*hex == '\0' && clean->len == 7 + 64)
    {
      g_free (*field);
      *field = g_string_free (clean, FALSE);
      return NULL;
    }
  g_string_free (clean, TRUE);
  safe = shown (value);
  return g_strdup_printf ("invalid value: %s (expected sha256: and 64 hex "
                          "digits, as openssl x509 -fingerprint -sha256 "
                          "prints)",
                          safe);
}

static char *
parse_double (const char *value, double min, gboolean min_open, double max,
              double *field)
{
  char *end = NULL;
  double number = g_ascii_strtod (value, &end);
  g_autofree char *safe = NULL;

  if (end != value && *end == '\0' && number <= max
      && (min_open ? number > min : number >= min))
    {
      *field = number;
      return NULL;
    }
  safe = shown (value);
  return g_strdup_printf ("invalid value: %s (a number %s %g and at most %g)",
                          safe, min_open ? "above" : "from", min, max);
}

static char *
parse_domains (const char *value, char ***field)
{
  g_auto (GStrv) parts = g_strsplit_set (value, ", ", -1);
  g_autoptr (GPtrArray) domains = g_ptr_array_new_with_free_func (g_free);

  for (gsize i = 0; parts[i] != NULL; i++)
    {
      if (*parts[i] == '\0')
        continue;
      if (!is_domain (parts[i]))
        {
          g_autofree char *safe = shown (parts[i]);

          return g_strdup_printf ("invalid domain: %s", safe);
        }
      g_ptr_array_add (domains, g_ascii_strdown (parts[i], -1));
    }
  if (domains->len == 0)
    return g_strdup ("no domain given");
  g_ptr_array_add (domains, NULL);
  g_strfreev (*field);
  *field = (char **) g_ptr_array_free (g_steal_pointer (&domains), FALSE);
  return NULL;
}

static char *
parse_schedule (const char *value, GArray **field)
{
  g_auto (GStrv) parts = g_strsplit (value, ",", -1);
  g_autoptr (GArray) days = g_array_new (FALSE, FALSE, sizeof (guint));

  for (gsize i = 0; parts[i] != NULL; i++)
    {
      guint n = 0;
      g_autofree char *trouble = parse_number (g_strstrip (parts[i]), 1,
                                               1000000, &n);

      if (trouble != NULL)
        return g_strdup_printf ("day %zu: %s", i + 1, trouble);
      g_array_append_val (days, n);
    }
  if (*field != NULL)
    g_array_unref (*field);
  *field = g_steal_pointer (&days);
  return NULL;
}

static char *
parse_delivery (const char *value, RmDelivery *field)
{
  g_autofree char *safe = NULL;

  if (strcmp (value, "interactive") == 0)
    *field = RM_DELIVERY_INTERACTIVE;
  else if (strcmp (value, "background") == 0)
    *field = RM_DELIVERY_BACKGROUND;
  else if (strcmp (value, "queue") == 0)
    *field = RM_DELIVERY_QUEUE;
  else
    {
      safe = shown (value);
      return g_strdup_printf ("invalid value: %s (use interactive, "
                              "background or queue)",
                              safe);
    }
  return NULL;
}

/* Checks value as spec says and stores it at base + offset. Returns NULL,
 * or the problem with it. */
static char *
store_value (const Loader *ld, const KeySpec *spec, const char *value,
             gpointer base)
{
  gpointer field = (char *) base + spec->offset;
  char **text_field = field;
  g_autofree char *safe = shown (value);
  gboolean ok = TRUE;
  const char *expected = NULL;

  switch (spec->kind)
    {
    case KIND_PATH:
      if (has_control (value))
        return g_strdup_printf ("control character in path: %s", safe);
      g_free (*text_field);
      *text_field = g_canonicalize_filename (value, ld->dir);
      return NULL;
    case KIND_PLUGIN:
      ok = is_plugin_name (value);
      expected = "a plugin name of a-z, 0-9, _ and -";
      break;
    case KIND_DOMAIN:
      ok = is_domain (value);
      expected = "a domain name such as mail.example.org";
      break;
    case KIND_SENDER:
      ok = is_sender (value);
      expected = "an address local@domain";
      break;
    case KIND_TIMEZONE:
      ok = !has_control (value) && is_time_zone (value);
      expected = "a time zone such as Europe/Paris or UTC";
      break;
    case KIND_HOST:
      for (const char *c = value; *c != '\0'; c++)
        ok = ok && !g_ascii_isspace (*c) && (guchar) *c >= 0x20 && *c != 0x7f;
      ok = ok && strlen (value) <= 255;
      expected = "a host name or IP address";
      break;
    case KIND_PORT:
      return parse_number (value, 1, 65535, field);
    case KIND_SECONDS:
      return parse_number (value, 1, 3600, field);
    case KIND_TLS:
      return parse_tls (value, field);
    case KIND_DELIVERY:
      return parse_delivery (value, field);
    case KIND_DURATION:
      return parse_duration (value, field);
    case KIND_TEXT:
      /* Never echoed: a password_command may hold a secret. */
      if (has_control (value))
        return g_strdup ("invalid value: it holds control characters");
      break;
    case KIND_BOOL:
      return parse_bool (value, field);
    case KIND_FINGERPRINT:
      return parse_fingerprint (value, field);
    case KIND_PRESET:
      return parse_preset (value, field);
    case KIND_FROM:
      return parse_from (value, field);
    case KIND_COUNT:
      return parse_number (value, 1, 1000000, field);
    case KIND_COUNT0:
      return parse_number (value, 0, 86400, field);
    case KIND_SHARE:
      return parse_double (value, 0.0, TRUE, 1.0, field);
    case KIND_SHARE0:
      return parse_double (value, 0.0, FALSE, 1.0, field);
    case KIND_LIMIT0:
      return parse_number (value, 0, 1000000, field);
    case KIND_GROWTH:
      return parse_double (value, 1.0, TRUE, 10.0, field);
    case KIND_DAYS:
      return parse_number (value, 1, 365, field);
    case KIND_SCHEDULE:
      return parse_schedule (value, field);
    case KIND_DOMAINS:
      return parse_domains (value, field);
    }

  if (!ok)
    return g_strdup_printf ("invalid value: %s (expected %s)", safe,
                            expected);
  g_free (*text_field);
  *text_field = g_strdup (value);
  return NULL;
}

static const KeySpec *
find_key (const KeySpec *specs, gsize n_specs, const char *key)
{
  for (gsize i = 0; i < n_specs; i++)
    if (strcmp (specs[i].name, key) == 0)
      return &specs[i];
  return NULL;
}

static char *
known_keys (const KeySpec *specs, gsize n_specs)
{
  GString *out = g_string_new (NULL);

  for (gsize i = 0; i < n_specs; i++)
    g_string_append_printf (out, "%s%s", i > 0 ? ", " : "", specs[i].name);
  return g_string_free (out, FALSE);
}

/* Reads every key of group into base. GKeyFile keeps a key that appears
 * twice (the last value wins), so repeats are reported here. It also keeps
 * trailing blanks, which nobody means in these values: they go. */
static void
load_group (Loader *ld, const char *group, const KeySpec *specs,
            gsize n_specs, gpointer base)
{
  g_auto (GStrv) keys = g_key_file_get_keys (ld->keys, group, NULL, NULL);
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GHashTable) repeated = g_hash_table_new (g_str_hash,
                                                      g_str_equal);

  for (gsize i = 0; keys != NULL && keys[i] != NULL; i++)
    {
      const char *key = keys[i];
      const KeySpec *spec = find_key (specs, n_specs, key);
      g_autofree char *value = NULL;
      g_autofree char *trouble = NULL;
      g_autoptr (GError) bad = NULL;

      if (!g_hash_table_add (seen, (gpointer) key))
        {
          if (g_hash_table_add (repeated, (gpointer) key))
            problem (ld, group, key, "set more than once");
          continue;
        }
      if (spec == NULL)
        {
          g_autofree char *known = known_keys (specs, n_specs);
          problem (ld, group, key, "unknown key (known: %s)", known);
          continue;
        }
      /* On a bad escape GLib sets the error yet returns a value. */
      value = g_key_file_get_string (ld->keys, group, key, &bad);
      if (g_error_matches (bad, G_KEY_FILE_ERROR,
                           G_KEY_FILE_ERROR_UNKNOWN_ENCODING))
        trouble = g_strdup ("the value is not UTF-8");
      else if (bad != NULL || value == NULL)
        trouble = g_strdup ("invalid escape sequence in the value "
                            "(write \\\\ for a backslash)");
      else if (*g_strchomp (value) == '\0')
        trouble = g_strdup ("empty value (remove the key to get the "
                            "default)");
      else
        trouble = store_value (ld, spec, value, base);
      if (trouble != NULL)
        problem (ld, group, key, "%s", trouble);
    }
}

static void
ramp_clear (RmRampConf *ramp)
{
  g_clear_pointer (&ramp->warmup, g_free);
  g_clear_pointer (&ramp->schedule, g_array_unref);
}

static void
ramp_copy (RmRampConf *to, const RmRampConf *from)
{
  ramp_clear (to);
  *to = *from;
  to->warmup = g_strdup (from->warmup);
  if (from->schedule != NULL)
    to->schedule = g_array_copy (from->schedule);
}

static void
server_free (gpointer data)
{
  RmServerConf *server = data;

  g_free (server->name);
  g_free (server->preset);
  g_free (server->host);
  g_free (server->tls_ca_file);
  g_free (server->tls_fingerprint);
  g_free (server->user);
  g_free (server->password_file);
  g_free (server->password_command);
  g_free (server->transport);
  g_strfreev (server->sender_domains);
  ramp_clear (&server->ramp);
  g_free (server);
}

/* The Gmail preset; doc/configuration.md explains each value. Keys in the group
 * override them. */
static void
apply_gmail (RmServerConf *server)
{
  g_free (server->host);
  server->host = g_strdup ("smtp.gmail.com");
  server->port = 587;
  server->tls = RM_TLS_STARTTLS;
  server->max_rcpts = 100;
  server->from = RM_FROM_ACCOUNT;
  /* Gmail's limit holds even where [rampmail] turned the ramp off. */
  g_free (server->ramp.warmup);
  server->ramp.warmup = g_strdup ("ramp");
  server->ramp.cap = 500;
  server->ramp.min_gap = 2;
  server->ramp.hourly_share = 0.25;
}

static gboolean
is_loopback (const char *host)
{
  return strcmp (host, "localhost") == 0 || strcmp (host, "::1") == 0
         || g_str_has_prefix (host, "127.");
}

/* Rules between keys of one server group, once all are read. */
static void
check_server (Loader *ld, const char *group, RmServerConf *server)
{
  gboolean port_set = g_key_file_has_key (ld->keys, group, "port", NULL);

  if (!port_set && server->tls == RM_TLS_IMPLICIT)
    server->port = 465;
  if (server->user != NULL && server->password_file == NULL
      && server->password_command == NULL)
    problem (ld, group, "user", "needs password_file or password_command");
  if (server->password_file != NULL && server->password_command != NULL)
    problem (ld, group, "password_command",
             "set together with password_file; keep one");
  if (server->user == NULL
      && (server->password_file != NULL || server->password_command != NULL))
    problem (ld, group,
             server->password_file ? "password_file" : "password_command",
             "set without user");
  if (server->preset != NULL && server->user == NULL)
    problem (ld, group, "user",
             "missing: the gmail preset needs the account's address");
  if (server->tls == RM_TLS_NONE
      && (server->tls_ca_file != NULL || server->tls_fingerprint != NULL))
    problem (ld, group,
             server->tls_ca_file ? "tls_ca_file" : "tls_fingerprint",
             "set while tls = none: there is no certificate to check");
  if (server->from == RM_FROM_ACCOUNT && server->user != NULL
      && strchr (server->user, '@') == NULL)
    problem (ld, group, "from",
             "account needs a user that is an address (local@domain)");
  if (server->from == RM_FROM_ACCOUNT && server->user == NULL)
    problem (ld, group, "from", "account needs user");
  if (server->tls == RM_TLS_NONE && server->user != NULL
      && server->host != NULL && !is_loopback (server->host))
    problem (ld, group, "user",
             "a password is never sent in plaintext to %s: set tls = "
             "starttls or implicit",
             server->host);
}

static void
load_server (Loader *ld, const char *group, const char *name,
             RmConfig *config)
{
  RmServerConf *server = g_new0 (RmServerConf, 1);
  g_autofree char *preset = NULL;

  server->name = g_strdup (name);
  server->port = 25;
  server->tls = RM_TLS_STARTTLS;
  server->tls_verify = TRUE;
  server->transport = g_strdup ("smtp");
  server->connect_timeout = 30;
  server->timeout = 60;
  ramp_copy (&server->ramp, &config->ramp);
  g_ptr_array_add (config->servers, server);

  if (!is_server_name (name))
    {
      g_autofree char *safe = shown (name);
      problem (ld, group, NULL,
               "invalid server name \"%s\" (use letters, digits, '.', '_' "
               "and '-')",
               safe);
    }
  preset = g_key_file_get_string (ld->keys, group, "preset", NULL);
  if (preset != NULL && strcmp (g_strstrip (preset), "gmail") == 0)
    apply_gmail (server);
  load_group (ld, group, server_keys, G_N_ELEMENTS (server_keys), server);
  if (server->host == NULL
      && !g_key_file_has_key (ld->keys, group, "host", NULL))
    problem (ld, group, "host", "missing (every server needs one)");
  check_server (ld, group, server);
}

/* GKeyFile merges a group that appears twice, so two [server a] would
 * silently become one server. The raw text shows the repeat; group lines
 * are read as GKeyFile reads them: "[" after optional blanks, up to the
 * last "]". */
static void
check_repeated_groups (Loader *ld, const char *path)
{
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;
  g_autoptr (GHashTable) count = NULL;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return; /* read a moment ago; the keys themselves are checked */
  count = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  lines = g_strsplit (text, "\n", -1);
  for (gsize i = 0; lines[i] != NULL; i++)
    {
      const char *start = lines[i];
      const char *end;
      char *name;
      guint seen;

      while (g_ascii_isspace (*start))
        start++;
      end = strrchr (start, ']');
      if (*start != '[' || end == NULL)
        continue;
      name = g_strndup (start + 1, (gsize) (end - start - 1));
      seen = GPOINTER_TO_UINT (g_hash_table_lookup (count, name));
      if (seen == 1)
        problem (ld, name, NULL, "the group appears more than once");
      g_hash_table_insert (count, name, GUINT_TO_POINTER (seen + 1));
    }
}

/* Sorts each group to its loader; returns the number of server groups. */
static guint
load_groups (Loader *ld, RmConfig *config)
{
  g_auto (GStrv) groups = g_key_file_get_groups (ld->keys, NULL);
  guint servers = 0;

  /* [rampmail] first: servers start from its warmup settings. */
  if (g_key_file_has_group (ld->keys, "rampmail"))
    load_group (ld, "rampmail", main_keys, G_N_ELEMENTS (main_keys), config);
  for (gsize i = 0; groups[i] != NULL; i++)
    {
      const char *group = groups[i];
      const gsize prefix = strlen (SERVER_PREFIX);

      if (strcmp (group, "rampmail") == 0)
        continue;
      else if (strcmp (group, SERVER_PREFIX) == 0)
        {
          problem (ld, group, NULL,
                   "a server group needs a name, as in [server NAME]");
          servers++;
        }
      else if (g_str_has_prefix (group, SERVER_PREFIX " "))
        {
          load_server (ld, group, group + prefix + 1, config);
          servers++;
        }
      else
        problem (ld, group, NULL,
                 "unknown group (use [rampmail] or [server NAME])");
    }
  return servers;
}

/* ---- defaults ---------------------------------------------------------------- */

/* The host's name, made fully qualified through the resolver when it has
 * no dot; as it is when that fails. */
static char *
local_fqdn (void)
{
  const char *name = g_get_host_name ();
  struct addrinfo hints = { .ai_flags = AI_CANONNAME,
                            .ai_family = AF_UNSPEC,
                            .ai_socktype = SOCK_STREAM };
  struct addrinfo *found = NULL;
  char *fqdn = NULL;

  if (strchr (name, '.') != NULL)
    return g_strdup (name);
  if (getaddrinfo (name, NULL, &hints, &found) == 0 && found != NULL
      && found->ai_canonname != NULL
      && strchr (found->ai_canonname, '.') != NULL)
    fqdn = g_strdup (found->ai_canonname);
  if (found != NULL)
    freeaddrinfo (found);
  return fqdn != NULL ? fqdn : g_strdup (name);
}

static void
set_default (char **field, const char *value)
{
  if (*field == NULL)
    *field = g_strdup (value);
}

static void
apply_defaults (RmConfig *config)
{
  set_default (&config->queue_dir, DEFAULT_QUEUE_DIR);
  set_default (&config->state_dir, DEFAULT_STATE_DIR);
  set_default (&config->plugin_dir, RM_PLUGINDIR);
  set_default (&config->aliases, DEFAULT_ALIASES);
  if (config->domain == NULL || config->hostname == NULL)
    {
      g_autofree char *fqdn = local_fqdn ();

      set_default (&config->domain, fqdn);
      set_default (&config->hostname, fqdn);
    }
}

/* ---- public ---------------------------------------------------------------- */

const char *
rm_config_default_path (void)
{
  return RM_SYSCONFDIR "/rampmail.conf";
}

static RmConfig *
config_new (const char *path)
{
  RmConfig *config = g_new0 (RmConfig, 1);

  config->file = g_strdup (path);
  config->selector = g_strdup ("balanced");
  config->delivery = RM_DELIVERY_BACKGROUND;
  config->queue_lifetime = 5 * 86400;
  config->retry_min = 120;
  config->retry_max = 3600;
  config->ramp.warmup = g_strdup ("ramp");
  config->ramp.start = 20;
  config->ramp.growth = 1.3;
  config->ramp.cap = 500;
  config->ramp.min_share = 0.5;
  config->ramp.restart_after = 7;
  config->servers = g_ptr_array_new_with_free_func (server_free);
  return config;
}

/* GLib's messages start with a capital; ours do not. */
static char *
lowercase_first (const char *message)
{
  char *copy = g_strdup (message);

  if (g_ascii_isupper (copy[0]) && g_ascii_islower (copy[1]))
    copy[0] = g_ascii_tolower (copy[0]);
  return copy;
}

static gboolean
read_file (GKeyFile *keys, const char *path, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autofree char *why = NULL;

  if (g_key_file_load_from_file (keys, path, G_KEY_FILE_KEEP_TRANSLATIONS,
                                 &local))
    return TRUE;
  why = lowercase_first (local->message);
  if (local->domain == G_FILE_ERROR)
    g_set_error (error, RM_ERROR, RM_ERROR_CONFIG, "%s: cannot read: %s",
                 path, why);
  else
    g_set_error (error, RM_ERROR, RM_ERROR_CONFIG, "%s: %s", path, why);
  return FALSE;
}

RmConfig *
rm_config_load (const char *path, GError **error)
{
  g_autoptr (GKeyFile) keys = g_key_file_new ();
  g_autoptr (GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *absolute = NULL;
  g_autofree char *dir = NULL;
  g_autoptr (RmConfig) config = NULL;
  Loader ld;

  if (!read_file (keys, path, error))
    return NULL;

  absolute = g_canonicalize_filename (path, NULL);
  dir = g_path_get_dirname (absolute);
  ld = (Loader){
    .file = path, .dir = dir, .keys = keys, .problems = problems
  };
  config = config_new (path);

  if (load_groups (&ld, config) == 0)
    problem (&ld, NULL, NULL,
             "no [server NAME] group: at least one server is needed");
  check_repeated_groups (&ld, path);
  if (config->retry_min > config->retry_max)
    problem (&ld, "rampmail", "retry_min",
             "longer than retry_max (%us > %us)", config->retry_min,
             config->retry_max);
  if (problems->len > 0)
    {
      g_autofree char *all = NULL;

      g_ptr_array_add (problems, NULL);
      all = g_strjoinv ("\n", (char **) problems->pdata);
      g_set_error_literal (error, RM_ERROR, RM_ERROR_CONFIG, all);
      return NULL;
    }

  apply_defaults (config);
  return g_steal_pointer (&config);
}

void
rm_config_free (RmConfig *config)
{
  if (config == NULL)
    return;
  g_free (config->file);
  g_free (config->queue_dir);
  g_free (config->state_dir);
  g_free (config->plugin_dir);
  g_free (config->domain);
  g_free (config->hostname);
  g_free (config->sender);
  g_free (config->aliases);
  g_free (config->selector);
  g_free (config->timezone);
  g_free (config->log_file);
  ramp_clear (&config->ramp);
  if (config->servers != NULL)
    g_ptr_array_unref (config->servers);
  g_free (config);
}
