/* -bs: SMTP submission on standard input and output.
 *
 * Enough ESMTP for frameworks that submit this way (Symfony Mailer's
 * default): EHLO/HELO, MAIL (BODY=, SIZE=), RCPT, DATA, RSET, NOOP, VRFY,
 * HELP and QUIT, offering 8BITMIME, PIPELINING and SIZE. SMTPUTF8 is not
 * offered: rampmail cannot relay it. Each message is queued exactly as a
 * command-line submission would be (submit.h); its DATA goes through a
 * temporary file in the queue's tmp/ folder, dot-unstuffed.
 *
 * Every line is one command: a line is read up to LF, a command line over
 * 512 octets or a NUL in it is refused, and addresses are checked by the
 * same parser as the command line, so no client line can smuggle another
 * command into the envelope.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "address.h"
#include "errors.h"
#include "log.h"
#include "smtpd.h"
#include "runner.h"
#include "submit.h"

#define LINE_MAX_COMMAND 512
/* The largest message taken, in octets (64 MiB), as SIZE announces it. */
#define SIZE_LIMIT 67108864

typedef struct {
  RmContext *ctx;
  const RmOptions *opts;
  FILE *in;
  FILE *out;
  gboolean greeted;
  char *sender; /* NULL: no MAIL yet */
  GPtrArray *rcpts;
  RmBodyArg body;
} Session;

static void
reply (Session *s, const char *text)
{
  fputs (text, s->out);
  fputs ("\r\n", s->out);
  fflush (s->out);
}

static void
reset (Session *s)
{
  g_clear_pointer (&s->sender, g_free);
  g_ptr_array_set_size (s->rcpts, 0);
  s->body = RM_BODY_DEFAULT;
}

/* Reads one line without its line end; FALSE at the end of input. A line
 * with a NUL or longer than max is returned with *bad set. */
static gboolean
read_line (Session *s, GString *line, gsize max, gboolean *bad)
{
  int c;

  g_string_truncate (line, 0);
  *bad = FALSE;
  while ((c = getc (s->in)) != EOF && c != '\n')
    {
      if (c == '\0' || line->len >= max)
        *bad = TRUE;
      else
        g_string_append_c (line, (char) c);
    }
  if (c == EOF && line->len == 0)
    return FALSE;
  if (line->len > 0 && line->str[line->len - 1] == '\r')
    g_string_truncate (line, line->len - 1);
  return TRUE;
}

/* The address inside "<...>" after a "FROM:" or "TO:" prefix; *params
 * points to what follows it. NULL if the syntax is wrong. */
static char *
path_argument (const char *arg, const char *prefix, const char **params)
{
  const char *open, *close;

  if (g_ascii_strncasecmp (arg, prefix, strlen (prefix)) != 0)
    return NULL;
  open = arg + strlen (prefix);
  while (*open == ' ')
    open++;
  if (*open != '<' || (close = strchr (open, '>')) == NULL)
    return NULL;
  *params = close + 1;
  return g_strndup (open + 1, (gsize) (close - open - 1));
}

static void
do_ehlo (Session *s, gboolean extended)
{
  const char *host = s->ctx->config->hostname;
  g_autofree char *line = NULL;

  reset (s);
  s->greeted = TRUE;
  if (!extended)
    {
      line = g_strdup_printf ("250 %s", host);
      reply (s, line);
      return;
    }
  line = g_strdup_printf ("250-%s", host);
  reply (s, line);
  reply (s, "250-PIPELINING");
  reply (s, "250-8BITMIME");
  reply (s, "250 SIZE " G_STRINGIFY (SIZE_LIMIT));
}

static void
do_mail (Session *s, const char *arg)
{
  const char *params = NULL;
  g_autofree char *path = path_argument (arg, "FROM:", &params);
  g_autoptr (GError) error = NULL;
  g_autofree char *sender = NULL;
  g_auto (GStrv) words = NULL;

  if (s->sender != NULL)
    {
      reply (s, "503 5.5.1 MAIL already given");
      return;
    }
  if (path == NULL)
    {
      reply (s, "501 5.5.4 syntax: MAIL FROM:<address>");
      return;
    }
  sender = rm_address_parse_sender (path, &error);
  if (sender == NULL || !rm_address_is_ascii (sender))
    {
      reply (s, "553 5.1.7 invalid sender address");
      return;
    }
  words = g_strsplit (params, " ", -1);
  for (gsize i = 0; words[i] != NULL; i++)
    {
      if (g_ascii_strcasecmp (words[i], "BODY=8BITMIME") == 0)
        s->body = RM_BODY_8BITMIME_ARG;
      else if (g_ascii_strcasecmp (words[i], "BODY=7BIT") == 0)
        s->body = RM_BODY_7BIT_ARG;
      else if (g_ascii_strncasecmp (words[i], "SIZE=", 5) == 0)
        {
          if (g_ascii_strtoull (words[i] + 5, NULL, 10) > SIZE_LIMIT)
            {
              reply (s, "552 5.3.4 message too big");
              return;
            }
        }
      else if (*words[i] != '\0')
        {
          reply (s, "555 5.5.4 unsupported MAIL parameter");
          return;
        }
    }
  s->sender = g_steal_pointer (&sender);
  reply (s, "250 2.1.0 ok");
}

static void
do_rcpt (Session *s, const char *arg)
{
  const char *params = NULL;
  g_autofree char *path = path_argument (arg, "TO:", &params);
  g_autoptr (GError) error = NULL;
  g_autofree char *rcpt = NULL;

  if (s->sender == NULL)
    {
      reply (s, "503 5.5.1 MAIL first");
      return;
    }
  if (path == NULL || *params != '\0')
    {
      reply (s, "501 5.5.4 syntax: RCPT TO:<address>");
      return;
    }
  rcpt = rm_address_parse_arg (path, &error);
  if (rcpt == NULL)
    {
      reply (s, "553 5.1.3 invalid recipient address");
      return;
    }
  if (!rm_address_is_ascii (rcpt))
    {
      reply (s, "553 5.6.7 UTF-8 addresses are not supported");
      return;
    }
  if (s->rcpts->len >= 1000)
    {
      reply (s, "452 4.5.3 too many recipients");
      return;
    }
  g_ptr_array_add (s->rcpts, g_steal_pointer (&rcpt));
  reply (s, "250 2.1.5 ok");
}

/* Copies the DATA section, dot-unstuffed, to fd; FALSE at a premature
 * end of input. */
static gboolean
copy_data (Session *s, int fd, gboolean *too_big)
{
  g_autoptr (GString) line = g_string_new (NULL);
  gsize total = 0;
  gboolean bad;

  *too_big = FALSE;
  while (read_line (s, line, SIZE_LIMIT, &bad))
    {
      const char *text = line->str;

      if (strcmp (text, ".") == 0)
        return TRUE;
      if (text[0] == '.')
        text++;
      total += strlen (text) + 2;
      if (total > SIZE_LIMIT || bad)
        *too_big = TRUE;
      if (!*too_big
          && (write (fd, text, strlen (text)) < 0 || write (fd, "\n", 1) < 0))
        *too_big = TRUE;
    }
  return FALSE;
}

/* Queues what copy_data wrote; returns the reply to send. */
static char *
queue_data (Session *s, int fd)
{
  RmOptions opts = *s->opts;
  RmSubmitSource source = { fd, " with ESMTP", TRUE };
  g_autoptr (GError) error = NULL;
  g_autofree char *id = NULL;
  int status;

  opts.recipients = s->rcpts;
  opts.sender = s->sender[0] != '\0' ? s->sender : (char *) "<>";
  opts.read_recipients = FALSE;
  opts.ignore_dots = TRUE;
  opts.body = s->body;
  lseek (fd, 0, SEEK_SET);
  status = rm_submit_from (s->ctx, &opts, &source, &id, &error);
  if (id != NULL)
    return g_strdup_printf ("250 2.0.0 queued as %s", id);
  if (status < 0 && error != NULL)
    {
      g_autofree char *why = rm_log_escape (error->message);

      if (error->code == RM_ERROR_DATA || error->code == RM_ERROR_USAGE)
        return g_strdup_printf ("554 5.6.0 %s", why);
      return g_strdup_printf ("451 4.3.0 %s", why);
    }
  return g_strdup ("451 4.3.0 not queued");
}

static void
do_data (Session *s)
{
  g_autofree char *answer = NULL;
  g_autofree char *tmp = g_build_filename (rm_queue_dir (s->ctx->queue),
                                           "tmp", NULL);
  gboolean too_big;
  int fd;

  if (s->sender == NULL)
    {
      reply (s, "503 5.5.1 MAIL first");
      return;
    }
  if (s->rcpts->len == 0)
    {
      reply (s, "554 5.5.1 no valid recipients");
      return;
    }
  fd = open (tmp, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0)
    {
      reply (s, "451 4.3.0 cannot create a temporary file");
      return;
    }
  reply (s, "354 end data with <CR><LF>.<CR><LF>");
  if (!copy_data (s, fd, &too_big))
    {
      close (fd);
      return;
    }
  answer = too_big ? g_strdup ("552 5.3.4 message too big")
                   : queue_data (s, fd);
  close (fd);
  reply (s, answer);
  reset (s);
}

/* Handles one command line; FALSE after QUIT. */
static gboolean
command (Session *s, const char *line)
{
  const char *arg = strchr (line, ' ');
  g_autofree char *verb = g_ascii_strup (line, arg ? arg - line : -1);

  arg = arg ? arg + 1 : "";
  if (strcmp (verb, "QUIT") == 0)
    {
      reply (s, "221 2.0.0 bye");
      return FALSE;
    }
  if (strcmp (verb, "EHLO") == 0 || strcmp (verb, "HELO") == 0)
    do_ehlo (s, verb[0] == 'E');
  else if (strcmp (verb, "NOOP") == 0)
    reply (s, "250 2.0.0 ok");
  else if (strcmp (verb, "RSET") == 0)
    {
      reset (s);
      reply (s, "250 2.0.0 ok");
    }
  else if (strcmp (verb, "VRFY") == 0)
    reply (s, "252 2.5.2 cannot verify, but will take the message");
  else if (strcmp (verb, "HELP") == 0)
    reply (s, "214 2.0.0 EHLO HELO MAIL RCPT DATA RSET NOOP VRFY QUIT");
  else if (!s->greeted)
    reply (s, "503 5.5.1 say EHLO first");
  else if (strcmp (verb, "MAIL") == 0)
    do_mail (s, arg);
  else if (strcmp (verb, "RCPT") == 0)
    do_rcpt (s, arg);
  else if (strcmp (verb, "DATA") == 0)
    do_data (s);
  else
    reply (s, "500 5.5.2 command not recognised");
  return TRUE;
}

int
rm_smtpd_run (RmContext *ctx, const RmOptions *opts, GError **error)
{
  g_autoptr (GString) line = g_string_new (NULL);
  g_autofree char *greeting = NULL;
  Session s = {
    ctx, opts, stdin, stdout, FALSE, NULL, NULL, RM_BODY_DEFAULT
  };
  gboolean bad;

  s.rcpts = g_ptr_array_new_with_free_func (g_free);
  greeting = g_strdup_printf ("220 %s ESMTP rampmail", ctx->config->hostname);
  reply (&s, greeting);
  while (read_line (&s, line, LINE_MAX_COMMAND, &bad))
    {
      if (bad)
        reply (&s, "500 5.5.2 line too long or with a NUL");
      else if (!command (&s, line->str))
        break;
    }
  reset (&s);
  g_ptr_array_unref (s.rcpts);
  return EX_OK;
}
