/* A hand-written RFC 5322 address-list parser that keeps only what goes
 * into the SMTP envelope (RFC 5321 mailboxes, RFC 6531 UTF-8 allowed).
 *
 * The input is split into tokens (atoms, quoted strings, domain literals
 * and the specials . @ < > , : ;) with comments and folding white space
 * skipped between them; a small recursive-descent parser on top of that
 * recognises mailbox, name-addr, angle-addr, group and the obsolete route
 * (which is dropped).
 *
 * It is strict on purpose: whatever it returns can be put between the
 * angle brackets of MAIL FROM / RCPT TO as it is. A mailbox never holds a
 * control character, and '<', '>' or white space only inside a quoted
 * local part. Anything it does not understand is an RM_ERROR_DATA that
 * quotes the address in question, never a guess.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <string.h>

#include "address.h"
#include "errors.h"

/* Longest excerpt of the input quoted in an error message, in octets. */
#define SNIPPET_MAX 80
/* RFC 5321 4.5.3.1.2. */
#define DOMAIN_MAX 255

typedef enum {
  TOK_END,
  TOK_ATOM,
  TOK_QSTRING,
  TOK_LITERAL,
  TOK_DOT,
  TOK_AT,
  TOK_LT,
  TOK_GT,
  TOK_COMMA,
  TOK_COLON,
  TOK_SEMI,
  TOK_ERROR,
} TokType;

typedef struct {
  TokType type;
  const char *start;     /* first octet of the token */
  const char *end;       /* one past its last octet */
  gboolean space_before; /* white space or a comment came before it */
} Token;

typedef struct {
  const char *text; /* the whole input, for nothing but messages */
  const char *p;    /* the lexer's position */
  const char *end;
  gboolean header; /* header value: folding allowed */
  gboolean allow_groups;
  gboolean allow_null; /* "<>" gives "" (sender) */
  const char *item;    /* start of the address being parsed */
  Token la;            /* one token of look-ahead */
  gboolean have_la;
  GError **error;
} Parser;

/* A run of atoms, quoted strings and dots: a display name or a local
 * part. */
typedef struct {
  const char *start;  /* first octet of the first token */
  const char *end;    /* one past the last token */
  unsigned count;     /* tokens */
  gboolean has_space; /* CFWS between two of the tokens */
  TokType last;
  const char *bad; /* why it is no local part, NULL if it is one */
} Words;

/* ---- small helpers ------------------------------------------------------ */

static gboolean
is_ctl (unsigned char c)
{
  return c < 0x20 || c == 0x7f;
}

/* RFC 5322 atext, plus every non-ASCII octet (RFC 6532). */
static gboolean
is_atext (unsigned char c)
{
  if (c >= 0x80)
    return TRUE;
  if (g_ascii_isalnum (c))
    return TRUE;
  return c != '\0' && strchr ("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* The text quoted in messages: printable, one line, with quotes and
 * control characters escaped. Invalid UTF-8 is shown as \xNN. */
static char *
escape_snippet (const char *start, const char *end)
{
  GString *s = g_string_new (NULL);
  const char *p;

  /* trim white space and line breaks at both ends */
  while (start < end && strchr (" \t\r\n", *start) != NULL)
    start++;
  while (end > start && strchr (" \t\r\n", end[-1]) != NULL)
    end--;

  if (end - start > SNIPPET_MAX)
    {
      /* keep the end, which is where the trouble was found */
      start = end - (SNIPPET_MAX - 3);
      while (start < end && ((unsigned char) *start & 0xc0) == 0x80)
        start++;
      g_string_append (s, "...");
    }

  for (p = start; p < end;)
    {
      unsigned char c = (unsigned char) *p;

      if (c >= 0x80)
        {
          gsize n = (gsize) g_utf8_skip[c];

          if (n <= (gsize) (end - p) && g_utf8_validate (p, n, NULL))
            {
              g_string_append_len (s, p, n);
              p += n;
            }
          else
            {
              g_string_append_printf (s, "\\x%02x", c);
              p++;
            }
          continue;
        }
      switch (c)
        {
        case '\r':
          g_string_append (s, "\\r");
          break;
        case '\n':
          g_string_append (s, "\\n");
          break;
        case '\t':
          g_string_append (s, "\\t");
          break;
        case '"':
          g_string_append (s, "\\\"");
          break;
        case '\\':
          g_string_append (s, "\\\\");
          break;
        default:
          if (is_ctl (c))
            g_string_append_printf (s, "\\x%02x", c);
          else
            g_string_append_c (s, (char) c);
        }
      p++;
    }
  return g_string_free (s, FALSE);
}

/* Sets the error: 'invalid address "TEXT": REASON', where TEXT runs from
 * the start of the current address up to upto (and the rest of the word
 * there). Always returns FALSE. */
static gboolean G_GNUC_PRINTF (3, 4)
    fail (Parser *ps, const char *upto, const char *format, ...)
{
  g_autofree char *reason = NULL;
  g_autofree char *snippet = NULL;
  const char *from = ps->item != NULL ? ps->item : ps->text;
  unsigned n;
  va_list ap;

  if (upto == NULL || upto > ps->end)
    upto = ps->end;
  if (upto < from)
    from = ps->text;
  if (upto <= from)
    upto = ps->end;

  va_start (ap, format);
  reason = g_strdup_vprintf (format, ap);
  va_end (ap);
  /* show the rest of a word cut at the error ("a..b@" -> "a..b@example") */
  for (n = 0; upto < ps->end && n < SNIPPET_MAX / 2; upto++, n++)
    if (!is_atext ((unsigned char) *upto) && strchr (".@[]:", *upto) == NULL)
      break;
  snippet = escape_snippet (from, upto);
  g_set_error (ps->error, RM_ERROR, RM_ERROR_DATA,
               "invalid address \"%s\": %s", snippet, reason);
  return FALSE;
}

/* How to name a token in "unexpected X". */
static char *
describe (const Token *t)
{
  switch (t->type)
    {
    case TOK_END:
      return g_strdup ("end");
    case TOK_QSTRING:
      return g_strdup ("quoted string");
    case TOK_LITERAL:
      return g_strdup ("'['");
    case TOK_ATOM:
      {
        g_autofree char *text = escape_snippet (t->start, t->end);
        return g_strdup_printf ("'%s'", text);
      }
    default:
      return g_strdup_printf ("'%c'", *t->start);
    }
}

static gboolean
fail_unexpected (Parser *ps, const Token *t)
{
  g_autofree char *what = describe (t);

  return fail (ps, t->end, "unexpected %s", what);
}

/* ---- lexer ---------------------------------------------------------------- */

/* Length of the line break at p if it is folding white space (CRLF or LF
 * followed by SP or HTAB) or ends the text; 0 if it is neither or folding
 * is not allowed here. */
static gsize
fold_len (const Parser *ps, const char *p)
{
  const char *q = p;

  if (!ps->header)
    return 0;
  if (q < ps->end && *q == '\r')
    q++;
  if (q >= ps->end || *q != '\n')
    return 0;
  q++;
  if (q == ps->end || *q == ' ' || *q == '\t')
    return (gsize) (q - p);
  return 0;
}

/* Handles a control character at p inside a comment, a quoted string or
 * between tokens: skips a fold, fails on anything else. */
static gboolean
skip_ctl (Parser *ps, const char *what)
{
  unsigned char c = (unsigned char) *ps->p;
  gsize n;

  if (c == '\t' && ps->header)
    {
      ps->p++;
      return TRUE;
    }
  if ((c == '\r' || c == '\n') && (n = fold_len (ps, ps->p)) > 0)
    {
      ps->p += n;
      return TRUE;
    }
  if (c == '\r' || c == '\n')
    return fail (ps, ps->p + 1,
                 ps->header ? "line break not followed by white space%s"
                            : "line break%s",
                 what);
  return fail (ps, ps->p + 1, "control character%s", what);
}

static gboolean
skip_comment (Parser *ps)
{
  const char *open = ps->p;
  unsigned depth = 0;

  while (ps->p < ps->end)
    {
      unsigned char c = (unsigned char) *ps->p;

      if (c == '(')
        {
          depth++;
          ps->p++;
        }
      else if (c == ')')
        {
          ps->p++;
          if (--depth == 0)
            return TRUE;
        }
      else if (c == '\\')
        {
          ps->p++;
          if (ps->p == ps->end)
            break;
          if (is_ctl ((unsigned char) *ps->p)
              && !(*ps->p == '\t' && ps->header))
            return fail (ps, ps->p + 1, "control character in comment");
          ps->p++;
        }
      else if (is_ctl (c))
        {
          if (!skip_ctl (ps, " in comment"))
            return FALSE;
        }
      else
        ps->p++;
    }
  if (ps->item == NULL || ps->item > open)
    ps->item = open;
  return fail (ps, ps->end, "unbalanced '('");
}

/* Skips white space, folds and comments; TRUE in *skipped if there were
 * any. */
static gboolean
skip_cfws (Parser *ps, gboolean *skipped)
{
  *skipped = FALSE;
  while (ps->p < ps->end)
    {
      unsigned char c = (unsigned char) *ps->p;

      if (c == ' ')
        ps->p++;
      else if (c == '(')
        {
          if (!skip_comment (ps))
            return FALSE;
        }
      else if (is_ctl (c))
        {
          if (!skip_ctl (ps, ""))
            return FALSE;
        }
      else
        return TRUE;
      *skipped = TRUE;
    }
  return TRUE;
}

static gboolean
lex_quoted (Parser *ps)
{
  const char *open = ps->p;

  ps->p++;
  while (ps->p < ps->end)
    {
      unsigned char c = (unsigned char) *ps->p;

      if (c == '"')
        {
          ps->p++;
          return TRUE;
        }
      if (c == '\\')
        {
          ps->p++;
          if (ps->p == ps->end)
            break;
          if (is_ctl ((unsigned char) *ps->p)
              && !(*ps->p == '\t' && ps->header))
            return fail (ps, ps->p + 1, "control character in quoted string");
          ps->p++;
        }
      else if (is_ctl (c))
        {
          if (!skip_ctl (ps, " in quoted string"))
            return FALSE;
        }
      else
        ps->p++;
    }
  if (ps->item == NULL || ps->item > open)
    ps->item = open;
  return fail (ps, ps->end, "unbalanced '\"'");
}

/* A domain literal: "[" dtext "]", no white space (RFC 5321 has none). */
static gboolean
lex_literal (Parser *ps)
{
  ps->p++;
  while (ps->p < ps->end)
    {
      unsigned char c = (unsigned char) *ps->p;

      if (c == ']')
        {
          ps->p++;
          return TRUE;
        }
      if (c == '[' || c == '\\' || c == ' ' || c >= 0x7f || is_ctl (c))
        {
          if (is_ctl (c))
            return fail (ps, ps->p + 1,
                         "control character in domain literal");
          return fail (ps, ps->p + 1, "bad character in domain literal");
        }
      ps->p++;
    }
  return fail (ps, ps->end, "unbalanced '['");
}

static Token
lex (Parser *ps)
{
  Token t = { TOK_ERROR, NULL, NULL, FALSE };
  unsigned char c;

  if (!skip_cfws (ps, &t.space_before))
    return t;
  t.start = ps->p;
  if (ps->p == ps->end)
    {
      t.type = TOK_END;
      t.end = ps->p;
      return t;
    }

  c = (unsigned char) *ps->p;
  switch (c)
    {
    case '.':
      t.type = TOK_DOT;
      ps->p++;
      break;
    case '@':
      t.type = TOK_AT;
      ps->p++;
      break;
    case '<':
      t.type = TOK_LT;
      ps->p++;
      break;
    case '>':
      t.type = TOK_GT;
      ps->p++;
      break;
    case ',':
      t.type = TOK_COMMA;
      ps->p++;
      break;
    case ':':
      t.type = TOK_COLON;
      ps->p++;
      break;
    case ';':
      t.type = TOK_SEMI;
      ps->p++;
      break;
    case '"':
      if (!lex_quoted (ps))
        return t;
      t.type = TOK_QSTRING;
      break;
    case '[':
      if (!lex_literal (ps))
        return t;
      t.type = TOK_LITERAL;
      break;
    case ')':
      fail (ps, ps->p + 1, "unbalanced ')'");
      return t;
    default:
      if (!is_atext (c))
        {
          fail (ps, ps->p + 1, "unexpected '%c'", c);
          return t;
        }
      while (ps->p < ps->end && is_atext ((unsigned char) *ps->p))
        ps->p++;
      t.type = TOK_ATOM;
      break;
    }
  t.end = ps->p;
  return t;
}

static Token
peek (Parser *ps)
{
  if (!ps->have_la)
    {
      ps->la = lex (ps);
      ps->have_la = TRUE;
    }
  return ps->la;
}

static Token
next (Parser *ps)
{
  Token t = peek (ps);

  if (t.type != TOK_ERROR)
    ps->have_la = FALSE;
  return t;
}

/* Where the next address starts, for messages. */
static void
mark_item (Parser *ps)
{
  ps->item = ps->have_la ? ps->la.start : ps->p;
}

/* ---- parser --------------------------------------------------------------- */

/* Consumes atoms, quoted strings and dots; returns the token that stopped
 * the run (not consumed). */
static TokType
collect_words (Parser *ps, Words *w)
{
  memset (w, 0, sizeof *w);
  w->last = TOK_END;

  for (;;)
    {
      Token t = peek (ps);

      if (t.type != TOK_ATOM && t.type != TOK_QSTRING && t.type != TOK_DOT)
        return t.type;
      next (ps);

      if (w->count == 0)
        {
          w->start = t.start;
          if (t.type == TOK_DOT)
            w->bad = "leading dot in local part";
        }
      else
        {
          if (t.space_before)
            {
              w->has_space = TRUE;
              if (w->bad == NULL)
                w->bad = "white space in local part";
            }
          if (w->bad == NULL && t.type == TOK_DOT && w->last == TOK_DOT)
            w->bad = "double dot in local part";
          else if (w->bad == NULL
                   && (t.type == TOK_QSTRING || w->last == TOK_QSTRING))
            w->bad = "quoted string mixed with atoms in local part";
        }
      w->count++;
      w->last = t.type;
      w->end = t.end;
    }
}

/* Appends the local part in w to out, or fails. upto: where the error
 * was found. */
static gboolean
take_local (Parser *ps, const Words *w, GString *out, const char *upto)
{
  const char *p;
  gsize before = out->len;

  if (w->count == 0)
    return fail (ps, upto, "empty local part");
  if (w->bad != NULL)
    return fail (ps, upto, "%s", w->bad);
  if (w->last == TOK_DOT)
    return fail (ps, upto, "trailing dot in local part");

  for (p = w->start; p < w->end; p++)
    if (*p != '\r' && *p != '\n') /* only folds hold them */
      g_string_append_c (out, *p);

  if (w->last == TOK_QSTRING)
    {
      if (out->len - before <= 2)
        return fail (ps, upto, "empty local part");
      if (memchr (out->str + before, '\t', out->len - before) != NULL)
        return fail (ps, upto, "tab in quoted local part");
    }
  return TRUE;
}

static gboolean
check_literal (Parser *ps, const Token *t)
{
  g_autofree char *inner = g_strndup (t->start + 1, t->end - t->start - 2);
  unsigned char buf[sizeof (struct in6_addr)];
  const char *colon;
  const char *p;

  if (inet_pton (AF_INET, inner, buf) == 1)
    return TRUE;
  if (g_ascii_strncasecmp (inner, "IPv6:", 5) == 0)
    {
      if (inet_pton (AF_INET6, inner + 5, buf) == 1)
        return TRUE;
      return fail (ps, t->end, "bad IPv6 address in domain literal");
    }
  /* General-address-literal: Ldh-str ":" 1*dcontent */
  colon = strchr (inner, ':');
  if (colon != NULL && colon > inner && colon[1] != '\0'
      && g_ascii_isalnum (inner[0]) && g_ascii_isalnum (colon[-1]))
    {
      for (p = inner; p < colon; p++)
        if (!g_ascii_isalnum (*p) && *p != '-')
          break;
      if (p == colon)
        return TRUE;
    }
  return fail (ps, t->end, "bad domain literal");
}

/* Checks a dot-atom domain span: labels of letters, digits, hyphens and
 * non-ASCII octets, none empty, none starting or ending with '-'. */
static gboolean
check_domain (Parser *ps, const char *start, const char *end)
{
  const char *label = start;
  const char *p;

  if (end - start > DOMAIN_MAX)
    return fail (ps, end, "domain longer than %d octets", DOMAIN_MAX);
  for (p = start; p <= end; p++)
    {
      if (p == end || *p == '.')
        {
          if (p == label)
            return fail (ps, end, "empty label in domain");
          if (*label == '-' || p[-1] == '-')
            return fail (ps, end, "domain label starting or ending with '-'");
          label = p + 1;
          continue;
        }
      if (!g_ascii_isalnum (*p) && *p != '-' && (unsigned char) *p < 0x80)
        return fail (ps, end, "bad character '%c' in domain", *p);
    }
  return TRUE;
}

/* After '@': a dot-atom domain or a domain literal, appended to out. */
static gboolean
parse_domain (Parser *ps, GString *out)
{
  Token t = peek (ps);
  const char *start;
  const char *end;
  TokType last = TOK_END;

  if (t.type == TOK_ERROR)
    return FALSE;
  if (t.type == TOK_LITERAL)
    {
      next (ps);
      if (!check_literal (ps, &t))
        return FALSE;
      g_string_append_len (out, t.start, t.end - t.start);
      return TRUE;
    }
  if (t.type != TOK_ATOM && t.type != TOK_DOT)
    return fail (ps, t.end, "missing domain after '@'");

  start = end = t.start;
  for (;;)
    {
      t = peek (ps);
      if (t.type != TOK_ATOM && t.type != TOK_DOT)
        break;
      if (last != TOK_END && t.space_before)
        return fail (ps, t.end, "white space in domain");
      if (t.type == TOK_DOT && last != TOK_ATOM)
        return fail (ps, t.end, "empty label in domain");
      next (ps);
      last = t.type;
      end = t.end;
    }
  if (t.type == TOK_ERROR)
    return FALSE;
  if (last == TOK_DOT)
    return fail (ps, end, "trailing dot in domain");
  if (!check_domain (ps, start, end))
    return FALSE;
  g_string_append_len (out, start, end - start);
  return TRUE;
}

/* Hands a finished mailbox to out, after a last check. */
static gboolean
emit (Parser *ps, GString *mbox, GPtrArray *out, const char *upto)
{
  const char *p;

  if (!g_utf8_validate (mbox->str, mbox->len, NULL))
    {
      g_string_free (mbox, TRUE);
      return fail (ps, upto, "invalid utf-8");
    }
  /* non-ASCII white space and controls (U+0085, U+00A0, U+2028, ...) are
   * as out of place as their ASCII siblings */
  for (p = mbox->str; *p != '\0'; p = g_utf8_next_char (p))
    if ((unsigned char) *p >= 0x80)
      {
        switch (g_unichar_type (g_utf8_get_char (p)))
          {
          case G_UNICODE_CONTROL:
          case G_UNICODE_LINE_SEPARATOR:
          case G_UNICODE_PARAGRAPH_SEPARATOR:
          case G_UNICODE_SPACE_SEPARATOR:
            g_string_free (mbox, TRUE);
            return fail (ps, upto,
                         "non-ASCII white space or control "
                         "character");
          default:
            break;
          }
      }
  g_ptr_array_add (out, g_string_free (mbox, FALSE));
  return TRUE;
}

/* The addr-spec after local part w; the '@' is the next token. */
static gboolean
parse_addr_spec_rest (Parser *ps, const Words *w, GPtrArray *out)
{
  GString *mbox = g_string_new (NULL);
  Token at = next (ps);

  if (!take_local (ps, w, mbox, at.end))
    goto error;
  g_string_append_c (mbox, '@');
  if (!parse_domain (ps, mbox))
    goto error;
  return emit (ps, mbox, out, ps->p);

error:
  g_string_free (mbox, TRUE);
  return FALSE;
}

/* An obsolete route "@a,@b:" after '<' (the '@' is next): checked and
 * dropped. */
static gboolean
skip_route (Parser *ps)
{
  g_autoptr (GString) scratch = g_string_new (NULL);

  for (;;)
    {
      Token t = next (ps);

      if (t.type != TOK_AT)
        return t.type == TOK_ERROR ? FALSE : fail_unexpected (ps, &t);
      g_string_truncate (scratch, 0);
      if (!parse_domain (ps, scratch))
        return FALSE;
      t = next (ps);
      while (t.type == TOK_COMMA)
        t = next (ps);
      if (t.type == TOK_COLON)
        return TRUE;
      if (t.type == TOK_ERROR)
        return FALSE;
      if (t.type == TOK_GT) /* "<@example.com>" */
        return fail (ps, t.end, "empty local part");
      if (t.type != TOK_AT)
        return fail (ps, t.end, "bad route in angle address");
      ps->la = t; /* put the '@' back */
      ps->have_la = TRUE;
    }
}

static gboolean
fail_angle (Parser *ps, const Token *t)
{
  if (t->type == TOK_ERROR)
    return FALSE;
  if (t->type == TOK_END || t->type == TOK_COMMA || t->type == TOK_SEMI)
    return fail (ps, t->start, "unbalanced '<'");
  return fail_unexpected (ps, t);
}

/* "<" [route] addr-spec ">", the '<' consumed. */
static gboolean
parse_angle (Parser *ps, GPtrArray *out)
{
  Token t = peek (ps);
  Words w;
  TokType stop;

  if (t.type == TOK_AT && !skip_route (ps))
    return FALSE;

  t = peek (ps);
  if (t.type == TOK_GT)
    {
      next (ps);
      if (!ps->allow_null)
        return fail (ps, t.end, "empty address '<>'");
      g_ptr_array_add (out, g_strdup (""));
      return TRUE;
    }

  stop = collect_words (ps, &w);
  if (stop == TOK_AT)
    {
      if (!parse_addr_spec_rest (ps, &w, out))
        return FALSE;
    }
  else if (stop == TOK_GT)
    {
      GString *mbox = g_string_new (NULL);

      t = peek (ps);
      if (!take_local (ps, &w, mbox, t.end))
        {
          g_string_free (mbox, TRUE);
          return FALSE;
        }
      if (!emit (ps, mbox, out, t.end))
        return FALSE;
    }
  else
    {
      t = peek (ps);
      return fail_angle (ps, &t);
    }

  t = next (ps);
  if (t.type != TOK_GT)
    return fail_angle (ps, &t);
  return TRUE;
}

/* One address: a mailbox or (if allowed) a group. */
static gboolean
parse_address (Parser *ps, GPtrArray *out, gboolean in_group)
{
  Words w;
  TokType stop;
  Token t;

  mark_item (ps);
  stop = collect_words (ps, &w);
  t = peek (ps);

  switch (stop)
    {
    case TOK_ERROR:
      return FALSE;

    case TOK_LT:
      next (ps);
      return parse_angle (ps, out);

    case TOK_AT:
      return parse_addr_spec_rest (ps, &w, out);

    case TOK_COLON:
      if (!ps->allow_groups)
        return fail (ps, t.end, "group syntax not allowed here");
      if (in_group)
        return fail (ps, t.end, "group inside a group");
      if (w.count == 0)
        return fail (ps, t.end, "group without a name");
      next (ps);
      for (;;)
        {
          t = peek (ps);
          switch (t.type)
            {
            case TOK_ERROR:
              return FALSE;
            case TOK_SEMI:
              next (ps);
              return TRUE;
            case TOK_END:
              /* "undisclosed-recipients:" without the ';': nothing is
               * left to misread, so take it as closed */
              return TRUE;
            case TOK_COMMA:
              next (ps);
              continue;
            default:
              if (!parse_address (ps, out, TRUE))
                return FALSE;
              t = peek (ps);
              if (t.type == TOK_ERROR)
                return FALSE;
              if (t.type == TOK_GT)
                return fail (ps, t.end, "unbalanced '>'");
              if (t.type != TOK_COMMA && t.type != TOK_SEMI
                  && t.type != TOK_END)
                {
                  g_autofree char *what = describe (&t);

                  return fail (ps, t.end, "expected ',' or ';' before %s",
                               what);
                }
            }
        }

    case TOK_SEMI:
      if (!in_group)
        return fail (ps, t.end, "unexpected ';' outside a group");
      G_GNUC_FALLTHROUGH;
    case TOK_COMMA:
    case TOK_END:
      {
        GString *mbox;

        if (w.count == 0)
          return TRUE;
        if (w.has_space)
          return fail (ps, w.end, "not an address");
        mbox = g_string_new (NULL);
        if (!take_local (ps, &w, mbox, w.end))
          {
            g_string_free (mbox, TRUE);
            return FALSE;
          }
        return emit (ps, mbox, out, w.end);
      }

    case TOK_GT:
      return fail (ps, t.end, "unbalanced '>'");

    default:
      return fail_unexpected (ps, &t);
    }
}

static void
parser_init (Parser *ps, const char *text, gboolean header, GError **error)
{
  memset (ps, 0, sizeof *ps);
  ps->text = ps->p = text;
  ps->end = text + strlen (text);
  ps->header = header;
  ps->allow_groups = header;
  ps->error = error;
}

static gboolean
parse_list (Parser *ps, GPtrArray *out)
{
  for (;;)
    {
      Token t = peek (ps);

      switch (t.type)
        {
        case TOK_ERROR:
          return FALSE;
        case TOK_END:
          return TRUE;
        case TOK_COMMA: /* empty list element (obs-addr-list) */
          next (ps);
          continue;
        default:
          break;
        }
      if (!parse_address (ps, out, FALSE))
        return FALSE;
      t = peek (ps);
      if (t.type == TOK_ERROR)
        return FALSE;
      if (t.type == TOK_GT)
        return fail (ps, t.end, "unbalanced '>'");
      if (t.type != TOK_COMMA && t.type != TOK_END)
        {
          g_autofree char *what = describe (&t);

          return fail (ps, t.end, "expected ',' before %s", what);
        }
    }
}

/* ---- public --------------------------------------------------------------- */

gboolean
rm_address_parse_list (const char *text, GPtrArray *out, GError **error)
{
  Parser ps;

  g_return_val_if_fail (text != NULL, FALSE);
  g_return_val_if_fail (out != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  parser_init (&ps, text, TRUE, error);
  return parse_list (&ps, out);
}

/* The checks every command-line argument gets before it is parsed. */
static gboolean
check_arg (const char *arg, GError **error)
{
  const char *p;

  for (p = arg; *p != '\0'; p++)
    if (is_ctl ((unsigned char) *p))
      {
        g_autofree char *snippet = escape_snippet (arg, arg + strlen (arg));

        g_set_error (error, RM_ERROR, RM_ERROR_DATA,
                     "invalid address \"%s\": %s", snippet,
                     *p == '\r' || *p == '\n' ? "line break"
                                              : "control character");
        return FALSE;
      }
  return TRUE;
}

static char *
parse_one (const char *arg, gboolean allow_null, GError **error)
{
  g_autoptr (GPtrArray) found = g_ptr_array_new_with_free_func (g_free);
  Parser ps;
  Token t;

  if (!check_arg (arg, error))
    return NULL;

  parser_init (&ps, arg, FALSE, error);
  ps.allow_null = allow_null;
  t = peek (&ps);
  if (t.type == TOK_ERROR)
    return NULL;
  if (t.type == TOK_END)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_DATA, "empty address");
      return NULL;
    }
  if (!parse_address (&ps, found, FALSE))
    return NULL;
  t = peek (&ps);
  if (t.type == TOK_ERROR)
    return NULL;
  if (t.type == TOK_COMMA)
    {
      if (found->len == 0)
        fail (&ps, t.end, "unexpected ','");
      else
        fail (&ps, ps.end, "more than one address");
      return NULL;
    }
  if (t.type == TOK_GT)
    {
      fail (&ps, t.end, "unbalanced '>'");
      return NULL;
    }
  if (t.type != TOK_END)
    {
      g_autofree char *what = describe (&t);

      fail (&ps, t.end, "unexpected %s after the address", what);
      return NULL;
    }
  if (found->len != 1)
    {
      fail (&ps, ps.end, "not an address");
      return NULL;
    }
  return g_strdup (g_ptr_array_index (found, 0));
}

char *
rm_address_parse_arg (const char *arg, GError **error)
{
  g_return_val_if_fail (arg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return parse_one (arg, FALSE, error);
}

char *
rm_address_parse_sender (const char *arg, GError **error)
{
  g_return_val_if_fail (arg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (*arg == '\0')
    return g_strdup ("");
  return parse_one (arg, TRUE, error);
}

gboolean
rm_address_parse_arg_list (const char *arg, GPtrArray *out, GError **error)
{
  Parser ps;
  guint before;

  g_return_val_if_fail (arg != NULL, FALSE);
  g_return_val_if_fail (out != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_arg (arg, error))
    return FALSE;
  before = out->len;
  parser_init (&ps, arg, FALSE, error);
  if (!parse_list (&ps, out))
    return FALSE;
  if (out->len == before)
    {
      g_autofree char *snippet = escape_snippet (arg, arg + strlen (arg));

      g_set_error (error, RM_ERROR, RM_ERROR_DATA,
                   "invalid address \"%s\": no address", snippet);
      return FALSE;
    }
  return TRUE;
}

/* Where the '@' between local part and domain is, or NULL. A quoted local
 * part may hold '@' and a domain literal too, so neither the first nor
 * the last '@' will do. */
static const char *
find_at (const char *mailbox)
{
  const char *p = mailbox;

  if (*p == '"')
    {
      for (p++; *p != '\0' && *p != '"'; p++)
        if (*p == '\\' && p[1] != '\0')
          p++;
      if (*p == '\0')
        return NULL;
      p++;
    }
  return strchr (p, '@');
}

gboolean
rm_address_equal (const char *a, const char *b)
{
  const char *at_a;
  const char *at_b;

  g_return_val_if_fail (a != NULL, FALSE);
  g_return_val_if_fail (b != NULL, FALSE);

  at_a = find_at (a);
  at_b = find_at (b);
  if (at_a == NULL || at_b == NULL)
    return at_a == NULL && at_b == NULL && strcmp (a, b) == 0;
  if (at_a - a != at_b - b || memcmp (a, b, at_a - a) != 0)
    return FALSE;
  return g_ascii_strcasecmp (at_a + 1, at_b + 1) == 0;
}

gboolean
rm_address_has_domain (const char *mailbox)
{
  g_return_val_if_fail (mailbox != NULL, FALSE);

  return find_at (mailbox) != NULL;
}

gboolean
rm_address_is_ascii (const char *s)
{
  g_return_val_if_fail (s != NULL, TRUE);

  for (; *s != '\0'; s++)
    if ((unsigned char) *s >= 0x80)
      return FALSE;
  return TRUE;
}

/* ---- qualifying header fields -------------------------------------------- */

/* The end of the quoted string or comment that starts at p ('"' or '('),
 * just past its closing character; NULL if it is not closed. */
static const char *
skip_enclosed (const char *p)
{
  char open = *p;
  int depth = 0;

  for (; *p != '\0'; p++)
    {
      if (*p == '\\' && p[1] != '\0')
        p++;
      else if (open == '"' && *p == '"' && depth++ > 0)
        return p + 1;
      else if (open == '(' && *p == '(')
        depth++;
      else if (open == '(' && *p == ')' && --depth == 0)
        return p + 1;
    }
  return NULL;
}

/* In [start, end), an element of an address list without angle brackets:
 * if it is one bare local part (a dot-atom or a quoted string, with
 * comments and white space around it), the position just after it, where
 * "@domain" goes; NULL otherwise (an address with a domain, a phrase, an
 * empty element). */
static const char *
bare_local_end (const char *start, const char *end)
{
  const char *local_start = NULL;
  const char *local_end = NULL;
  gboolean in_local = FALSE;

  for (const char *p = start; p < end;)
    {
      if (*p == '(')
        {
          p = skip_enclosed (p);
          in_local = FALSE;
          if (p == NULL)
            return NULL;
        }
      else if (g_ascii_isspace (*p))
        {
          p++;
          in_local = FALSE;
        }
      else if (*p == '"' || *p == '.' || is_atext ((unsigned char) *p))
        {
          /* a second word after a gap: a phrase, not an address */
          if (local_end != NULL && !in_local)
            return NULL;
          if (local_start == NULL)
            local_start = p;
          p = *p == '"' ? skip_enclosed (p) : p + 1;
          if (p == NULL)
            return NULL;
          in_local = TRUE;
          local_end = p;
        }
      else
        return NULL; /* '@', '[', ... */
    }
  /* An empty quoted string ("") is no address. */
  if (local_end != NULL && local_end - local_start == 2
      && *local_start == '"')
    return NULL;
  return local_end;
}

/* TRUE if [start, end) (the inside of angle brackets) holds an address
 * without a domain; "<>" and routes ("@a,@b:x@y") are left alone. */
static gboolean
angle_needs_domain (const char *start, const char *end)
{
  gboolean content = FALSE;

  for (const char *p = start; p < end;)
    if (*p == '"')
      {
        p = skip_enclosed (p);
        if (p == NULL)
          return FALSE;
        content = TRUE;
      }
    else if (*p == '@' || *p == '<')
      return FALSE;
    else
      {
        content = content || !g_ascii_isspace (*p);
        p++;
      }
  return content;
}

char *
rm_address_qualify_list (const char *text, const char *domain)
{
  g_autoptr (GString) out = NULL;
  gboolean changed = FALSE;
  const char *p = text;

  g_return_val_if_fail (text != NULL && domain != NULL, NULL);

  out = g_string_sized_new (strlen (text) + strlen (domain) + 8);
  while (*p != '\0')
    {
      const char *seg = p, *open = NULL, *close = NULL, *q = p;
      const char *at = NULL;

      /* one element: up to ',' or ';', or ':' after a group's name */
      while (*q != '\0' && *q != ',' && *q != ';' && *q != ':')
        {
          if (*q == '"' || *q == '(')
            q = skip_enclosed (q);
          else if (*q == '<')
            {
              open = q++;
              while (q != NULL && *q != '\0' && *q != '>')
                q = *q == '"' ? skip_enclosed (q) : q + 1;
              if (q == NULL || *q != '>')
                return NULL;
              close = q++;
            }
          else
            q++;
          if (q == NULL)
            return NULL; /* unclosed quote or comment: leave it */
        }
      if (*q != ':')
        {
          if (open != NULL && angle_needs_domain (open + 1, close))
            at = close;
          else if (open == NULL)
            at = bare_local_end (seg, q);
        }
      if (at != NULL)
        {
          g_string_append_len (out, seg, at - seg);
          g_string_append_c (out, '@');
          g_string_append (out, domain);
          seg = at;
          changed = TRUE;
        }
      g_string_append_len (out, seg, q - seg);
      if (*q != '\0')
        g_string_append_c (out, *q++);
      p = q;
    }
  return changed ? g_string_free (g_steal_pointer (&out), FALSE) : NULL;
}
