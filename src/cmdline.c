/* The sendmail command line, parsed by hand.
 *
 * The rules follow Postfix's sendmail(1), which uses getopt(3) in POSIX
 * mode:
 * - single-letter flags may be grouped ("-ti" is "-t -i");
 * - a flag that takes a value takes the rest of its argument ("-fa@b",
 *   "-FCronDaemon", "-B8BITMIME") or, when nothing follows the letter, the
 *   next argument whatever it looks like ("-f <>", "-F 'Backup Robot'");
 * - options end at "--" or at the first argument that does not start with
 *   '-' (a lone "-" is such an argument): that argument and every one after
 *   it is a recipient, even if it starts with '-'. This is getopt's POSIX
 *   behaviour, which Postfix asks for on Linux, and it keeps an address
 *   such as "-oQ/tmp" that follows a recipient from being read as a flag;
 * - -b, -o and -q take the letters that follow as their value ("-bm",
 *   "-oem", "-odi", "-q30m").
 *
 * Flags that are accepted but have no effect are listed once, in
 * ignored_flags[] below; --help prints that list.
 */
#include "config.h"

#include <string.h>

#include "cmdline.h"
#include "errors.h"

/* ---- accepted but ignored ------------------------------------------------ */

/* One flag that rampmail accepts for compatibility and then ignores.
 *
 * name is what follows the '-': one letter for a flag of its own ("h"), or
 * "o"/"q" plus the letter for an -o option or a -q variant ("oe", "qR").
 * The entry named "o" stands for every -o option not listed otherwise. */
typedef struct {
  const char *name;
  gboolean takes_value; /* one-letter flags only: needs an argument */
  const char *shown;    /* how --help and the docs write it */
  const char *reason;
} IgnoredFlag;

static const IgnoredFlag ignored_flags[] = {
  { "A", TRUE, "-Am, -Ac", "submission kind: one configuration serves both" },
  { "c", FALSE, "-c",
    "hold expensive connections: rampmail only has relays" },
  { "e", TRUE, "-eX", "old spelling of -oeX (error mode)" },
  { "G", FALSE, "-G",
    "gateway submission: only bare local names are rewritten" },
  { "h", TRUE, "-h N", "hop count: the relays enforce their own limit" },
  { "L", TRUE, "-L label", "syslog label: rampmail always logs as rampmail" },
  { "m", FALSE, "-m",
    "me too: the sender is never dropped from an alias list" },
  { "n", FALSE, "-n",
    "no aliasing: bare local names always use the aliases" },
  { "O", TRUE, "-O option=value",
    "Postfix parameter override: settings come from the configuration "
    "file (-O requiretls=yes is refused)" },
  { "p", TRUE, "-p protocol",
    "protocol name for Received:, which names rampmail itself" },
  { "s", FALSE, "-s",
    "keep mbox \"From \" lines: rampmail always drops that line" },
  { "U", FALSE, "-U", "initial user submission: every submission is one" },
  { "x", FALSE, "-x",
    "accepted by Postfix for old callers; it has no meaning" },
  { "X", TRUE, "-X logfile",
    "traffic log: see rampmail's log (-XV, VERP, is refused)" },
  { "o7", FALSE, "-o7, -o8", "7/8-bit hint: use -B 7BIT or -B 8BITMIME" },
  { "o8", FALSE, NULL, NULL }, /* shown with -o7 */
  { "oA", FALSE, "-oAfile",
    "alias database: the configuration names the aliases file" },
  { "oe", FALSE, "-oem, -oep, -oeq, -oew, -oee",
    "error mode: errors go to stderr and the exit status" },
  { "oL", FALSE, "-oLn", "log level: use -v or the log_file setting" },
  { "om", FALSE, "-om",
    "me too: the sender is never dropped from an alias list" },
  { "o", FALSE, "-oXvalue",
    "other options: settings come from the configuration file" },
  { "qR", FALSE, "-qRsite, -qSsite",
    "partial queue run: rampmail runs the whole queue" },
  { "qS", FALSE, NULL, NULL }, /* shown with -qR */
};

static const IgnoredFlag *
ignored_lookup (const char *name)
{
  for (gsize i = 0; i < G_N_ELEMENTS (ignored_flags); i++)
    if (strcmp (ignored_flags[i].name, name) == 0)
      return &ignored_flags[i];
  return NULL;
}

/* ---- parser state ---------------------------------------------------------- */

typedef struct {
  int argc;
  char **argv;
  int index; /* the argument being read */
  RmOptions *opts;
} Parser;

/* The value of the flag whose letter is at letter[-1], letter pointing
 * just past it inside argv[p->index]: the rest of the argument, or else
 * the next argument. *glued tells which. NULL with an error if neither. */
static const char *
take_value (Parser *p, const char *letter, gboolean *glued, GError **error)
{
  if (*letter != '\0')
    {
      *glued = TRUE;
      return letter;
    }
  *glued = FALSE;
  if (p->index + 1 >= p->argc)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
                   "option -%c needs an argument", letter[-1]);
      return NULL;
    }
  p->index++;
  return p->argv[p->index];
}

static void
replace_string (char **field, const char *value)
{
  g_free (*field);
  *field = g_strdup (value);
}

/* Records an ignored flag as the caller wrote it. */
static void
note_ignored (Parser *p, char letter, const char *value, gboolean glued)
{
  char *text;

  if (value == NULL)
    text = g_strdup_printf ("-%c", letter);
  else
    text = g_strdup_printf ("-%c%s%s", letter, glued ? "" : " ", value);
  g_ptr_array_add (p->opts->ignored, text);
}

/* text as it can go into a message: control and non-ASCII bytes are
 * written as escapes, so that a message stays one line of valid UTF-8. */
static char *
printable (const char *text)
{
  return g_strescape (text, NULL);
}

static gboolean
has_line_break (const char *text)
{
  return strpbrk (text, "\r\n") != NULL;
}

/* ---- flags with values ------------------------------------------------- */

static gboolean
parse_mode (Parser *p, const char *value, GError **error)
{
  static const struct {
    char letter;
    RmMode mode;
  } modes[] = {
    { 'm', RM_MODE_SEND },    { 'p', RM_MODE_LIST_QUEUE },
    { 'i', RM_MODE_ALIASES }, { 's', RM_MODE_SMTP_STDIO },
    { 'V', RM_MODE_VERSION },
  };

  if (value[0] != '\0' && value[1] == '\0')
    for (gsize i = 0; i < G_N_ELEMENTS (modes); i++)
      if (modes[i].letter == value[0])
        {
          p->opts->mode = modes[i].mode;
          return TRUE;
        }

  if (value[0] != '\0' && value[1] == '\0'
      && strchr ("dDl", value[0]) != NULL)
    g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
                 "option -b%c is not supported: rampmail has no daemon",
                 value[0]);
  else
    {
      g_autofree char *shown = printable (value);
      g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
                   "option -b%s is not supported", shown);
    }
  return FALSE;
}

static gboolean
parse_body (Parser *p, const char *value, GError **error)
{
  if (g_ascii_strcasecmp (value, "7BIT") == 0)
    p->opts->body = RM_BODY_7BIT_ARG;
  else if (g_ascii_strcasecmp (value, "8BITMIME") == 0)
    p->opts->body = RM_BODY_8BITMIME_ARG;
  else
    {
      g_autofree char *shown = printable (value);
      g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
                   "option -B needs 7BIT or 8BITMIME, not \"%s\"", shown);
      return FALSE;
    }
  return TRUE;
}

static gboolean
bad_notify (const char *value, GError **error)
{
  g_autofree char *shown = printable (value);

  g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
               "option -N needs \"never\" or a list of success, failure "
               "and delay, not \"%s\"",
               shown);
  return FALSE;
}

/* -N: "never", or a list of success, failure and delay. Stored lowercase,
 * without spaces, in the order given. */
static gboolean
parse_notify (Parser *p, const char *value, GError **error)
{
  g_auto (GStrv) items = g_strsplit (value, ",", -1);
  g_autoptr (GString) norm = g_string_new (NULL);
  gboolean never = FALSE;

  for (gsize i = 0; items[i] != NULL; i++)
    {
      char *item = g_strstrip (items[i]);

      if (g_ascii_strcasecmp (item, "never") == 0)
        never = TRUE;
      else if (g_ascii_strcasecmp (item, "success") != 0
               && g_ascii_strcasecmp (item, "failure") != 0
               && g_ascii_strcasecmp (item, "delay") != 0)
        return bad_notify (value, error);
      if (norm->len > 0)
        g_string_append_c (norm, ',');
      g_string_append (norm, item);
    }

  if (norm->len == 0 || (never && strchr (norm->str, ',') != NULL))
    return bad_notify (value, error);
  g_free (p->opts->notify);
  p->opts->notify = g_ascii_strdown (norm->str, -1);
  return TRUE;
}

static gboolean
parse_return (Parser *p, const char *value, GError **error)
{
  if (g_ascii_strcasecmp (value, "hdrs") != 0
      && g_ascii_strcasecmp (value, "full") != 0)
    {
      g_autofree char *shown = printable (value);
      g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
                   "option -R needs hdrs or full, not \"%s\"", shown);
      return FALSE;
    }
  g_free (p->opts->dsn_ret);
  p->opts->dsn_ret = g_ascii_strdown (value, -1);
  return TRUE;
}

/* -V: an RFC 3461 ENVID is at most 100 printable characters. */
static gboolean
parse_envid (Parser *p, const char *value, GError **error)
{
  gsize len = strlen (value);

  for (gsize i = 0; i < len; i++)
    if (value[i] <= ' ' || value[i] >= 0x7f)
      len = 0;
  if (len == 0 || len > 100)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
                   "option -V needs an envelope id of 1 to 100 printable "
                   "ASCII characters without spaces");
      return FALSE;
    }
  replace_string (&p->opts->envid, value);
  return TRUE;
}

/* -od: the first letter decides, as in sendmail ("-odbackground"). */
static gboolean
parse_delivery (Parser *p, const char *value, GError **error)
{
  switch (value[0])
    {
    case 'b':
      p->opts->delivery = RM_DELIVERY_BACKGROUND;
      return TRUE;
    case 'i':
      p->opts->delivery = RM_DELIVERY_INTERACTIVE;
      return TRUE;
    case 'q':
    case 'd': /* sendmail's "deferred": queue only */
      p->opts->delivery = RM_DELIVERY_QUEUE;
      return TRUE;
    default:
      {
        g_autofree char *shown = printable (value);
        g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
                     "option -od needs b, i or q (-odb, -odi, -odq), "
                     "not \"-od%s\"",
                     shown);
        return FALSE;
      }
    }
}

/* -oXvalue: -oi and -od mean something, every other option is ignored. */
static gboolean
parse_o (Parser *p, const char *value, gboolean glued, GError **error)
{
  char name[3] = { 'o', value[0], '\0' };

  if (value[0] == '\0')
    {
      g_set_error_literal (error, RM_ERROR, RM_ERROR_USAGE,
                           "option -o needs an argument");
      return FALSE;
    }
  if (value[0] == 'i')
    {
      /* -oi takes an optional boolean, as sendmail's options do. */
      p->opts->ignore_dots = value[1] == '\0'
                             || strchr ("fFnN", value[1]) == NULL;
      return TRUE;
    }
  if (value[0] == 'd')
    return parse_delivery (p, value + 1, error);

  if (ignored_lookup (name) == NULL)
    name[1] = '\0';
  g_assert (ignored_lookup (name) != NULL);
  note_ignored (p, 'o', value, glued);
  return TRUE;
}

/* -q, -qINTERVAL, -qIid, -qRsite, -qSsite. Only a glued value counts:
 * "-q" alone is a single queue run, as in Postfix. */
static gboolean
parse_q (Parser *p, const char *value, GError **error)
{
  char name[3] = { 'q', value[0], '\0' };

  p->opts->mode = RM_MODE_QUEUE_RUN;
  if (value[0] == '\0')
    {
      g_clear_pointer (&p->opts->queue_interval, g_free);
      return TRUE;
    }
  if (g_ascii_isdigit (value[0]))
    {
      if (rm_cmdline_interval_seconds (value, error) == 0)
        {
          g_prefix_error (error, "option -q: ");
          return FALSE;
        }
      replace_string (&p->opts->queue_interval, value);
      return TRUE;
    }
  if (value[0] == 'I' && value[1] != '\0')
    {
      replace_string (&p->opts->queue_id, value + 1);
      return TRUE;
    }
  if (value[0] != 'I' && ignored_lookup (name) == NULL)
    {
      g_autofree char *shown = printable (value);
      g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
                   "option -q%s is not supported", shown);
      return FALSE;
    }
  if (value[1] == '\0')
    {
      g_set_error (error, RM_ERROR, RM_ERROR_USAGE, "option -q%c needs a %s",
                   value[0], value[0] == 'I' ? "queue id" : "site");
      return FALSE;
    }
  note_ignored (p, 'q', value, TRUE);
  return TRUE;
}

/* The letters of -A, -L, ... that take a value and are ignored, with the
 * few values that must not be ignored. */
static gboolean
parse_ignored_value (Parser *p, char letter, const char *value,
                     gboolean glued, GError **error)
{
  if (letter == 'X' && glued && value[0] == 'V')
    {
      g_set_error_literal (error, RM_ERROR, RM_ERROR_USAGE,
                           "option -XV (VERP) is not supported");
      return FALSE;
    }
  if (letter == 'O' && g_ascii_strncasecmp (value, "requiretls=", 11) == 0
      && g_ascii_strcasecmp (value + 11, "no") != 0)
    {
      g_autofree char *shown = printable (value);
      g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
                   "option -O %s is not supported: rampmail does not "
                   "implement REQUIRETLS (RFC 8689)",
                   shown);
      return FALSE;
    }
  note_ignored (p, letter, value, glued);
  return TRUE;
}

/* One flag letter that takes a value. */
static gboolean
parse_valued (Parser *p, char letter, const char *value, gboolean glued,
              GError **error)
{
  RmOptions *opts = p->opts;

  switch (letter)
    {
    case 'b':
      return parse_mode (p, value, error);
    case 'B':
      return parse_body (p, value, error);
    case 'C':
      replace_string (&opts->config_file, value);
      return TRUE;
    case 'f':
    case 'r':
      replace_string (&opts->sender, value);
      return TRUE;
    case 'F':
      if (has_line_break (value))
        {
          g_set_error_literal (error, RM_ERROR, RM_ERROR_USAGE,
                               "option -F: the full name holds a line "
                               "break");
          return FALSE;
        }
      replace_string (&opts->full_name, value);
      return TRUE;
    case 'N':
      return parse_notify (p, value, error);
    case 'o':
      return parse_o (p, value, glued, error);
    case 'R':
      return parse_return (p, value, error);
    case 'V':
      return parse_envid (p, value, error);
    default:
      return parse_ignored_value (p, letter, value, glued, error);
    }
}

static gboolean
takes_value (char letter)
{
  char name[2] = { letter, '\0' };
  const IgnoredFlag *flag;

  if (strchr ("bBCfFNoRrV", letter) != NULL)
    return TRUE;
  flag = ignored_lookup (name);
  return flag != NULL && flag->takes_value;
}

/* A flag without value; FALSE if the letter is not known at all. */
static gboolean
parse_plain (Parser *p, char letter)
{
  char name[2] = { letter, '\0' };

  switch (letter)
    {
    case 't':
      p->opts->read_recipients = TRUE;
      return TRUE;
    case 'i':
      p->opts->ignore_dots = TRUE;
      return TRUE;
    case 'v':
      p->opts->verbose = TRUE;
      return TRUE;
    case 'I':
      p->opts->mode = RM_MODE_ALIASES;
      return TRUE;
    default:
      if (ignored_lookup (name) == NULL)
        return FALSE;
      note_ignored (p, letter, NULL, FALSE);
      return TRUE;
    }
}

/* Names the unknown letter at c, and the argument when that says more. */
static gboolean
unknown_letter (const char *arg, const char *c, GError **error)
{
  g_autofree char *shown = printable (arg);

  if (!g_ascii_isgraph (*c))
    g_set_error (error, RM_ERROR, RM_ERROR_USAGE, "unknown option \"%s\"",
                 shown);
  else if (c == arg + 1 && c[1] == '\0')
    g_set_error (error, RM_ERROR, RM_ERROR_USAGE, "unknown option -%c", *c);
  else
    g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
                 "unknown option -%c (in %s)", *c, shown);
  return FALSE;
}

/* One argument of grouped single-letter flags, such as "-ti" or
 * "-tfbounces@example.com". */
static gboolean
parse_group (Parser *p, GError **error)
{
  const char *arg = p->argv[p->index];

  for (const char *c = arg + 1; *c != '\0'; c++)
    {
      const char *value;
      gboolean glued;

      if (*c == 'q')
        return parse_q (p, c + 1, error);
      if (takes_value (*c))
        {
          value = take_value (p, c + 1, &glued, error);
          return value != NULL && parse_valued (p, *c, value, glued, error);
        }
      if (!parse_plain (p, *c))
        return unknown_letter (arg, c, error);
    }
  return TRUE;
}

static gboolean
parse_long (Parser *p, const char *arg, GError **error)
{
  static const struct {
    const char *name;
    RmMode mode;
  } longs[] = {
    { "--help", RM_MODE_HELP },
    { "--version", RM_MODE_VERSION },
    { "--check-config", RM_MODE_CHECK_CONFIG },
    { "--test-servers", RM_MODE_TEST_SERVERS },
    { "--test", RM_MODE_TEST_SERVERS },
    { "--delete", RM_MODE_DELETE },
    { "--status", RM_MODE_STATUS },
  };
  g_autofree char *shown = NULL;

  if (strcmp (arg, "--send-to") == 0 || g_str_has_prefix (arg, "--send-to="))
    {
      const char *value = arg[9] == '=' ? arg + 10 : NULL;

      if (value == NULL && p->index + 1 < p->argc)
        value = p->argv[++p->index];
      if (value == NULL || *value == '\0')
        {
          g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
                       "option --send-to needs an address");
          return FALSE;
        }
      replace_string (&p->opts->send_to, value);
      return TRUE;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (longs); i++)
    if (strcmp (arg, longs[i].name) == 0)
      {
        p->opts->mode = longs[i].mode;
        return TRUE;
      }
  shown = printable (arg);
  g_set_error (error, RM_ERROR, RM_ERROR_USAGE, "unknown option %s", shown);
  return FALSE;
}

/* ---- whole command line ------------------------------------------------ */

static RmMode
mode_from_program (const char *argv0)
{
  g_autofree char *base = NULL;

  if (argv0 == NULL)
    return RM_MODE_SEND;
  base = g_path_get_basename (argv0);
  if (strcmp (base, "mailq") == 0)
    return RM_MODE_LIST_QUEUE;
  if (strcmp (base, "newaliases") == 0)
    return RM_MODE_ALIASES;
  return RM_MODE_SEND;
}

static const char *
mode_name (RmMode mode)
{
  switch (mode)
    {
    case RM_MODE_QUEUE_RUN:
      return "-q";
    case RM_MODE_LIST_QUEUE:
      return "-bp (mailq)";
    case RM_MODE_ALIASES:
      return "-bi (newaliases)";
    case RM_MODE_SMTP_STDIO:
      return "-bs";
    case RM_MODE_CHECK_CONFIG:
      return "--check-config";
    case RM_MODE_TEST_SERVERS:
      return "--test";
    case RM_MODE_STATUS:
      return "--status";
    case RM_MODE_DELETE:
      return "--delete";
    default:
      return NULL;
    }
}

/* Recipients and -t only make sense when a message is sent; --help and
 * --version ignore them. */
static gboolean
check_mode (const RmOptions *opts, GError **error)
{
  const char *name = mode_name (opts->mode);

  if (name == NULL)
    return TRUE;
  if (opts->mode == RM_MODE_DELETE && opts->recipients->len == 0)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
                   "--delete needs the queue ids to delete");
      return FALSE;
    }
  if (opts->send_to != NULL && opts->mode != RM_MODE_TEST_SERVERS)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
                   "--send-to goes with --test");
      return FALSE;
    }
  if (opts->recipients->len > 0 && opts->mode != RM_MODE_DELETE
      && opts->mode != RM_MODE_TEST_SERVERS)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
                   "%s takes no recipient arguments", name);
      return FALSE;
    }
  if (opts->read_recipients)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
                   "-t cannot be used with %s", name);
      return FALSE;
    }
  return TRUE;
}

static gboolean
parse_all (Parser *p, GError **error)
{
  for (; p->index < p->argc; p->index++)
    {
      const char *arg = p->argv[p->index];

      if (arg[0] != '-' || arg[1] == '\0')
        break;
      if (strcmp (arg, "--") == 0)
        {
          p->index++;
          break;
        }
      if (arg[1] == '-' ? !parse_long (p, arg, error)
                        : !parse_group (p, error))
        return FALSE;
    }

  for (; p->index < p->argc; p->index++)
    {
      const char *arg = p->argv[p->index];

      /* --test NAME... --send-to ADDR: the option may follow the names. */
      if (p->opts->mode == RM_MODE_TEST_SERVERS
          && (strcmp (arg, "--send-to") == 0
              || g_str_has_prefix (arg, "--send-to=")))
        {
          if (!parse_long (p, arg, error))
            return FALSE;
          continue;
        }
      g_ptr_array_add (p->opts->recipients, g_strdup (arg));
    }
  return check_mode (p->opts, error);
}

gboolean
rm_cmdline_parse (int argc, char **argv, RmOptions *opts, GError **error)
{
  Parser p = { .argc = argc, .argv = argv, .index = 1, .opts = opts };

  opts->mode = mode_from_program (argc > 0 ? argv[0] : NULL);
  opts->recipients = g_ptr_array_new_with_free_func (g_free);
  opts->ignored = g_ptr_array_new_with_free_func (g_free);

  if (!parse_all (&p, error))
    {
      rm_options_clear (opts);
      return FALSE;
    }
  return TRUE;
}

void
rm_options_clear (RmOptions *opts)
{
  g_free (opts->sender);
  g_free (opts->full_name);
  g_free (opts->config_file);
  g_free (opts->notify);
  g_free (opts->dsn_ret);
  g_free (opts->envid);
  g_free (opts->queue_interval);
  g_free (opts->queue_id);
  g_free (opts->send_to);
  if (opts->recipients != NULL)
    g_ptr_array_unref (opts->recipients);
  if (opts->ignored != NULL)
    g_ptr_array_unref (opts->ignored);
  memset (opts, 0, sizeof *opts);
}

/* ---- -q intervals -------------------------------------------------------- */

guint
rm_cmdline_interval_seconds (const char *text, GError **error)
{
  guint64 total = 0;
  const char *c = text;
  g_autofree char *shown = NULL;

  if (text == NULL || *text == '\0')
    goto bad;
  while (*c != '\0')
    {
      guint64 number = 0;
      guint64 unit;

      if (!g_ascii_isdigit (*c))
        goto bad;
      for (; g_ascii_isdigit (*c); c++)
        {
          number = number * 10 + (guint64) (*c - '0');
          if (number > G_MAXUINT)
            goto bad;
        }
      /* A number without a unit counts minutes, as in sendmail. */
      switch (*c == '\0' ? 'm' : g_ascii_tolower (*c++))
        {
        case 's':
          unit = 1;
          break;
        case 'm':
          unit = 60;
          break;
        case 'h':
          unit = 60 * 60;
          break;
        case 'd':
          unit = 24 * 60 * 60;
          break;
        case 'w':
          unit = 7 * 24 * 60 * 60;
          break;
        default:
          goto bad;
        }
      total += number * unit;
      if (total > G_MAXUINT)
        goto bad;
    }
  if (total > 0)
    return (guint) total;

bad:
  shown = printable (text != NULL ? text : "");
  g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
               "bad interval \"%s\": use numbers with s, m, h, d or w, "
               "such as 30m or 1h30m",
               shown);
  return 0;
}

/* ---- --help ---------------------------------------------------------------- */

static const char help_head[]
    = "Usage: rampmail [OPTION...] [--] [RECIPIENT...]\n"
      "       mailq       (rampmail -bp)\n"
      "       newaliases  (rampmail -bi)\n"
      "\n"
      "Reads one message on standard input and relays it through the SMTP\n"
      "servers of the configuration file. Options end at \"--\" or at the\n"
      "first recipient; every argument after that is a recipient.\n"
      "\n"
      "Modes:\n"
      "  -bm                 read a message and send it (the default)\n"
      "  -bp, mailq          list the queue\n"
      "  -bi, -I, newaliases check the aliases file\n"
      "  -bs                 SMTP on standard input and output\n"
      "  -q                  deliver what waits in the queue\n"
      "  -qINTERVAL          keep running: deliver what is due every INTERVAL\n"
      "                      (such as 30m, 1h30m)\n"
      "  -qIID               deliver queue entry ID now\n"
      "  --delete ID...      remove queue entries without delivering them\n"
      "  --check-config      check the configuration file and exit\n"
      "  --test [SERVER...]  connect to each server (or those named): TLS,\n"
      "                      certificate, login, extensions; --test-servers\n"
      "                      is the same\n"
      "  --send-to ADDR      with --test: also send a test message through\n"
      "                      each server\n"
      "  --status            servers (ramp day, allowance, used, left) and\n"
      "                      why each queued message waits\n"
      "  --help              show this help\n"
      "  --version, -bV      show the version\n"
      "\n"
      "Sending:\n"
      "  -t                  also send to the To, Cc and Bcc header addresses\n"
      "                      (Resent-To, -Cc, -Bcc when the message has them)\n"
      "  -i, -oi             a line with a single \".\" does not end the input\n"
      "  -f ADDR, -r ADDR    envelope sender (\"<>\" for none)\n"
      "  -F NAME             full name for the From header added when missing\n"
      "  -B 7BIT|8BITMIME    body type\n"
      "  -N never|LIST       DSN notify: never, or success,failure,delay\n"
      "  -R hdrs|full        DSN: return headers only or the full message\n"
      "  -V ENVID            DSN envelope id\n"
      "  -odi                deliver before exiting (exit status tells)\n"
      "  -odb                return at once, deliver in the background\n"
      "  -odq                only queue; a later -q delivers\n"
      "  -C FILE             configuration file, by default\n"
      "                      " RM_SYSCONFDIR "/rampmail.conf\n"
      "  -v                  verbose\n"
      "  --                  end of options\n"
      "\n"
      "Accepted and ignored:\n";

/* Appends "  SHOWN  reason" with the reason wrapped at 78 columns. */
static void
append_ignored (GString *out, const IgnoredFlag *flag)
{
  const int indent = 22;
  g_auto (GStrv) words = g_strsplit (flag->reason, " ", -1);
  gsize column;

  g_string_append_printf (out, "  %s", flag->shown);
  column = 2 + strlen (flag->shown);
  if (column + 1 >= (gsize) indent)
    {
      g_string_append_c (out, '\n');
      column = 0;
    }
  for (gsize i = 0; words[i] != NULL; i++)
    {
      gsize len = strlen (words[i]);

      if (column > (gsize) indent && column + 1 + len > 78)
        {
          g_string_append_c (out, '\n');
          column = 0;
        }
      if (column <= (gsize) indent)
        {
          g_string_append_printf (out, "%*s", (int) (indent - column), "");
          column = indent;
        }
      else
        {
          g_string_append_c (out, ' ');
          column++;
        }
      g_string_append (out, words[i]);
      column += len;
    }
  g_string_append_c (out, '\n');
}

const char *
rm_cmdline_help (void)
{
  static char *help;

  if (g_once_init_enter (&help))
    {
      GString *out = g_string_new (help_head);

      for (gsize i = 0; i < G_N_ELEMENTS (ignored_flags); i++)
        if (ignored_flags[i].shown != NULL)
          append_ignored (out, &ignored_flags[i]);
      g_string_append (out,
                       "\nAny other option is an error (exit status 64).\n");
      g_once_init_leave (&help, g_string_free (out, FALSE));
    }
  return help;
}
