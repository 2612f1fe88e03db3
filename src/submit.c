/* Submission of one message; see submit.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "address.h"
#include "aliases.h"
#include "errors.h"
#include "intake.h"
#include "log.h"
#include "mime.h"
#include "privs.h"
#include "runner.h"
#include "submit.h"

typedef struct {
  RmContext *ctx;
  const RmOptions *opts;
  const RmSubmitSource *source;
  RmAliases *aliases;
  char *login;
  char *sender;
  GPtrArray *rcpts; /* final envelope recipients */
  char *id;
  int fd;
} Submission;

static char *
submitting_login (void)
{
  struct passwd *pw = getpwuid (getuid ());

  if (pw != NULL && pw->pw_name != NULL && *pw->pw_name != '\0')
    return g_strdup (pw->pw_name);
  return g_strdup_printf ("uid%u", (unsigned) getuid ());
}

static char *
qualify (const Submission *sub, const char *mailbox)
{
  if (*mailbox == '\0' || rm_address_has_domain (mailbox))
    return g_strdup (mailbox);
  return g_strdup_printf ("%s@%s", mailbox, sub->ctx->config->domain);
}

/* Adds mailbox, resolved through the aliases, unless it is there already. */
static void
add_recipient (Submission *sub, const char *mailbox)
{
  g_autoptr (GPtrArray) resolved = g_ptr_array_new_with_free_func (g_free);

  rm_aliases_resolve (sub->aliases, sub->ctx->config->domain, mailbox,
                      resolved);
  for (guint i = 0; i < resolved->len; i++)
    {
      gboolean seen = FALSE;

      for (guint k = 0; k < sub->rcpts->len && !seen; k++)
        seen = rm_address_equal (sub->rcpts->pdata[k], resolved->pdata[i]);
      if (!seen)
        g_ptr_array_add (sub->rcpts, g_strdup (resolved->pdata[i]));
    }
}

static gboolean
take_argv_recipients (Submission *sub, GPtrArray *mailboxes, GError **error)
{
  GPtrArray *args = sub->opts->recipients;

  for (guint i = 0; args != NULL && i < args->len; i++)
    {
      /* "a@x, b@y" in one argument is a list, as sendmail takes it. */
      if (!rm_address_parse_arg_list (args->pdata[i], mailboxes, error))
        {
          g_prefix_error (error, "recipient: ");
          return FALSE;
        }
    }
  if (mailboxes->len == 0 && !sub->opts->read_recipients)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_USAGE,
                   "recipient addresses must be given on the command line "
                   "or with -t");
      return FALSE;
    }
  return TRUE;
}

static gboolean
choose_sender (Submission *sub, GError **error)
{
  const char *given = sub->opts->sender;
  g_autofree char *parsed = NULL;

  if (given != NULL)
    {
      parsed = rm_address_parse_sender (given, error);
      if (parsed == NULL)
        {
          g_prefix_error (error, "sender (-f): ");
          return FALSE;
        }
      sub->sender = qualify (sub, parsed);
    }
  else if (sub->ctx->config->sender != NULL)
    sub->sender = g_strdup (sub->ctx->config->sender);
  else
    sub->sender = qualify (sub, sub->login);
  return TRUE;
}

static gboolean
needs_quotes (const char *name)
{
  for (const char *p = name; *p; p++)
    if (strchr ("()<>[]:;@\\,.\"", *p) != NULL)
      return TRUE;
  return FALSE;
}

/* The From: value to add when the message has none. */
static char *
default_from (const Submission *sub)
{
  const char *name = sub->opts->full_name;
  g_autofree char *addr = *sub->sender ? g_strdup (sub->sender)
                                       : qualify (sub, sub->login);
  GString *quoted;

  if (name == NULL || *name == '\0')
    return g_steal_pointer (&addr);
  if (!needs_quotes (name))
    return g_strdup_printf ("%s <%s>", name, addr);
  quoted = g_string_new ("\"");
  for (const char *p = name; *p; p++)
    {
      if (*p == '"' || *p == '\\')
        g_string_append_c (quoted, '\\');
      g_string_append_c (quoted, *p);
    }
  g_string_append_printf (quoted, "\" <%s>", addr);
  return g_string_free (quoted, FALSE);
}

static gboolean
take_header_recipients (const RmIntakeResult *in, GPtrArray *mailboxes,
                        GError **error)
{
  GPtrArray *fields = in->resent->len > 0 ? in->resent : in->to;

  for (guint i = 0; i < fields->len; i++)
    if (!rm_address_parse_list (fields->pdata[i], mailboxes, error))
      {
        g_prefix_error (error, "recipient header: ");
        return FALSE;
      }
  return TRUE;
}

/* libESMTP 1.1 cannot send SMTPUTF8, so UTF-8 addresses cannot go out. */
static gboolean
check_ascii_envelope (const Submission *sub, GError **error)
{
  const char *bad = NULL;

  if (!rm_address_is_ascii (sub->sender))
    bad = sub->sender;
  for (guint i = 0; bad == NULL && i < sub->rcpts->len; i++)
    if (!rm_address_is_ascii (sub->rcpts->pdata[i]))
      bad = sub->rcpts->pdata[i];
  if (bad == NULL)
    return TRUE;
  g_set_error (error, RM_ERROR, RM_ERROR_DATA,
               "address %s needs SMTPUTF8, which rampmail cannot send "
               "yet; nothing was queued",
               bad);
  return FALSE;
}

static gboolean
spool_message (Submission *sub, RmIntakeResult *in, GError **error)
{
  const RmConfig *config = sub->ctx->config;
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *stamp = g_date_time_format (now, "%Y%m%d%H%M%S");
  g_autofree char *msgid = NULL;
  g_autofree char *from = default_from (sub);
  g_autofree char *date = rm_intake_format_date (now);
  g_autofree char *received = NULL;
  RmIntakeParams params = { 0 };

  sub->fd = rm_queue_create (sub->ctx->queue, &sub->id, error);
  if (sub->fd < 0)
    return FALSE;
  msgid = g_strdup_printf ("<%s.%s@%s>", stamp, sub->id, config->hostname);
  received = g_strdup_printf ("by %s (rampmail, from user %s, uid %u)%s\r\n"
                              "\tid %s; %s",
                              config->hostname, sub->login,
                              (unsigned) getuid (), sub->source->with,
                              sub->id, date);
  params.ignore_dots = sub->opts->ignore_dots;
  params.default_from = from;
  params.message_id = msgid;
  params.received = received;
  params.domain = config->domain;
  params.now = now;
  return rm_intake_stream (sub->source->fd, sub->fd, &params, in, error);
}

/* Re-encodes a message with over-long body lines (see mime.h). */
static gboolean
limit_lines (Submission *sub, GError **error)
{
  int out = rm_queue_create_rewrite (sub->ctx->queue, sub->id, error);

  if (out < 0)
    return FALSE;
  if (!rm_mime_limit_lines (sub->fd, out, error)
      || !rm_queue_finish_rewrite (sub->ctx->queue, sub->id, error))
    {
      close (out);
      return FALSE;
    }
  close (sub->fd);
  sub->fd = out;
  rm_log_info ("%s: body lines over 998 octets re-encoded", sub->id);
  return TRUE;
}

/* The lowercase domain of the first address in a From value, or NULL. */
static char *
address_domain (const char *from)
{
  g_autoptr (GPtrArray) boxes = g_ptr_array_new_with_free_func (g_free);
  const char *at;

  if (from == NULL || !rm_address_parse_list (from, boxes, NULL)
      || boxes->len == 0)
    return NULL;
  at = strrchr (boxes->pdata[0], '@');
  return at ? g_ascii_strdown (at + 1, -1) : NULL;
}

static gboolean
commit (Submission *sub, const RmIntakeResult *in, GError **error)
{
  g_autoptr (RmEntry) entry = rm_entry_new ();
  g_autofree char *from = rm_log_escape (sub->sender);

  entry->id = g_strdup (sub->id);
  entry->sender = g_strdup (sub->sender);
  for (guint i = 0; i < sub->rcpts->len; i++)
    g_ptr_array_add (entry->rcpts, g_strdup (sub->rcpts->pdata[i]));
  entry->body = (in->eight_bit || sub->opts->body == RM_BODY_8BITMIME_ARG)
                    ? RM_BODY_8BITMIME
                    : RM_BODY_7BIT;
  entry->created = g_get_real_time () / G_USEC_PER_SEC;
  entry->dkim = in->dkim;
  entry->from_domain = address_domain (in->from);
  if (!rm_queue_commit (sub->ctx->queue, entry, sub->fd, error))
    return FALSE;
  rm_log_info ("%s: queued from=<%s> size=%" G_GINT64_FORMAT
               " nrcpt=%u user=%s uid=%u",
               sub->id, from, in->size, sub->rcpts->len, sub->login,
               (unsigned) getuid ());
  if (in->nul_removed > 0)
    rm_log_warn ("%s: %u NUL octets removed from the message", sub->id,
                 in->nul_removed);
  return TRUE;
}

/* Reads, checks and queues the message. */
static gboolean
accept_message (Submission *sub, GError **error)
{
  g_autoptr (GPtrArray) mailboxes = g_ptr_array_new_with_free_func (g_free);
  RmIntakeResult in = { 0 };
  gboolean ok;

  if (!take_argv_recipients (sub, mailboxes, error)
      || !choose_sender (sub, error))
    return FALSE;
  ok = spool_message (sub, &in, error);
  if (ok && sub->opts->read_recipients)
    ok = take_header_recipients (&in, mailboxes, error);
  for (guint i = 0; ok && i < mailboxes->len; i++)
    add_recipient (sub, mailboxes->pdata[i]);
  if (ok && sub->rcpts->len == 0)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_DATA,
                   "no recipient addresses found in the message header");
      ok = FALSE;
    }
  ok = ok && check_ascii_envelope (sub, error);
  if (ok && in.long_lines)
    ok = limit_lines (sub, error);
  ok = ok && commit (sub, &in, error);
  rm_intake_result_clear (&in);
  return ok;
}

static RmDelivery
delivery_of (const RmContext *ctx, const RmOptions *opts)
{
  if (opts->delivery != RM_DELIVERY_DEFAULT)
    return opts->delivery;
  return ctx->config->delivery;
}

static RmDelivery
delivery_mode (const Submission *sub)
{
  return delivery_of (sub->ctx, sub->opts);
}

/* -odi: this process delivers the entry; the exit status tells. */
static int
deliver_now (Submission *sub, GError **error)
{
  /* Not a flush: a server that is backed off stays so. */
  RmRunOptions run = { FALSE, sub->id };
  RmDeliverStats stats = { 0 };

  if (!rm_deliver_run (sub->ctx, &run, &stats, error))
    {
      rm_log_warn ("%s: %s; the message stays queued", sub->id,
                   (*error)->message);
      g_clear_error (error);
      return EX_OK;
    }
  if (stats.failed > 0)
    rm_runner_kick (sub->ctx); /* the bounce goes out in the background */
  if (stats.failed > 0 && stats.sent == 0 && stats.deferred == 0)
    {
      fprintf (stderr, "rampmail: %s: every recipient was refused\n",
               sub->id);
      return EX_UNAVAILABLE;
    }
  return EX_OK;
}

int
rm_submit_from (RmContext *ctx, const RmOptions *opts,
                const RmSubmitSource *source, char **queue_id, GError **error)
{
  g_autoptr (RmAliases) aliases = NULL;
  Submission sub = { ctx, opts, source, NULL, NULL, NULL, NULL, NULL, -1 };
  int status = -1;

  aliases = rm_aliases_load (ctx->config->aliases, error);
  if (aliases == NULL)
    return -1;
  sub.aliases = aliases;
  sub.login = submitting_login ();
  sub.rcpts = g_ptr_array_new_with_free_func (g_free);

  if (!accept_message (&sub, error))
    {
      if (sub.id != NULL)
        rm_queue_discard (ctx->queue, sub.id);
    }
  else
    {
      if (queue_id != NULL)
        *queue_id = g_strdup (sub.id);
      switch (delivery_mode (&sub))
        {
        case RM_DELIVERY_DEFAULT:
        case RM_DELIVERY_BACKGROUND:
          if (source->kick_runner)
            rm_runner_kick (ctx);
          status = EX_OK;
          break;
        case RM_DELIVERY_QUEUE:
          status = EX_OK;
          break;
        case RM_DELIVERY_INTERACTIVE:
          status = deliver_now (&sub, error);
          break;
        }
    }

  if (sub.fd >= 0)
    close (sub.fd);
  g_free (sub.login);
  g_free (sub.sender);
  g_free (sub.id);
  g_ptr_array_unref (sub.rcpts);
  return status;
}

int
rm_submit (RmContext *ctx, const RmOptions *opts, GError **error)
{
  RmSubmitSource source = { STDIN_FILENO, "", TRUE };
  int status = rm_submit_from (ctx, opts, &source, NULL, error);

  /* Queued, and the runner (if any) has its own copy of the group. */
  if (delivery_of (ctx, opts) != RM_DELIVERY_INTERACTIVE)
    rm_privs_drop ();
  return status;
}
