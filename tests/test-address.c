/* Unit tests for address.c and aliases.c. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "address.h"
#include "aliases.h"
#include "errors.h"

/* ---- helpers ---------------------------------------------------------- */

/* The mailboxes joined with '|', or NULL (and *message set) on error. */
static char *
parse_list_joined (const char *text, char **message)
{
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;

  if (!rm_address_parse_list (text, out, &error))
    {
      g_assert_nonnull (error);
      g_assert_true (error->domain == RM_ERROR);
      g_assert_cmpint (error->code, ==, RM_ERROR_DATA);
      if (message != NULL)
        *message = g_strdup (error->message);
      return NULL;
    }
  g_assert_no_error (error);
  g_ptr_array_add (out, NULL);
  return g_strjoinv ("|", (char **) out->pdata);
}

static gboolean
is_atext_char (unsigned char c)
{
  return c >= 0x80 || g_ascii_isalnum (c)
         || (c != '\0' && strchr ("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* What every returned mailbox must look like, whatever the input was:
 * something that can go between the brackets of RCPT TO:<...> as it is. */
static void
assert_safe_mailbox (const char *m)
{
  const char *p = m;
  const char *domain;

  g_assert_nonnull (m);
  g_assert_true (g_utf8_validate (m, -1, NULL));
  for (p = m; *p != '\0'; p++)
    g_assert_false ((unsigned char) *p < 0x20 || *p == 0x7f);

  p = m;
  if (*p == '"')
    {
      /* quoted local part: printable, escapes complete, no tab */
      for (p++; *p != '"'; p++)
        {
          g_assert_cmpint (*p, !=, '\0');
          if (*p == '\\')
            p++;
          g_assert_cmpint (*p, !=, '\0');
          g_assert_cmpint (*p, !=, '\t');
        }
      p++;
      g_assert_cmpint (p - m, >, 2);
    }
  else
    {
      const char *start = p;

      for (; *p != '\0' && *p != '@'; p++)
        g_assert_true (is_atext_char ((unsigned char) *p) || *p == '.');
      g_assert_cmpint (p - start, >, 0);
      g_assert_cmpint (*start, !=, '.');
      g_assert_cmpint (p[-1], !=, '.');
      g_assert_null (g_strstr_len (start, p - start, ".."));
    }

  if (*p == '\0')
    return;
  g_assert_cmpint (*p, ==, '@');
  domain = p + 1;
  if (*domain == '[')
    {
      for (p = domain + 1; *p != ']'; p++)
        {
          g_assert_cmpint (*p, !=, '\0');
          g_assert_true (*p > ' ' && *p < 0x7f && *p != '[' && *p != '\\');
        }
      g_assert_cmpint (p[1], ==, '\0');
      return;
    }
  g_assert_cmpint (*domain, !=, '\0');
  g_assert_cmpint (*domain, !=, '.');
  for (p = domain; *p != '\0'; p++)
    g_assert_true (g_ascii_isalnum (*p) || *p == '-' || *p == '.'
                   || (unsigned char) *p >= 0x80);
  g_assert_cmpint (p[-1], !=, '.');
  g_assert_null (strstr (domain, ".."));
}

/* ---- address lists (header values) ---------------------------------------- */

typedef struct {
  const char *input;
  const char *expect; /* mailboxes joined with '|'; "" for none */
} ListCase;

static const ListCase list_ok[] = {
  /* plain and name-addr (cases 017, 022) */
  { "anna@example.com", "anna@example.com" },
  { "anna@example.com, Ben Stone <ben@example.org>",
    "anna@example.com|ben@example.org" },
  { "Auditor <audit@example.net>, legal@example.org",
    "audit@example.net|legal@example.org" },
  { "ops@example.com, Ops Team <ops@example.com>",
    "ops@example.com|ops@example.com" },
  { "dev@example.org, <dev@example.org>", "dev@example.org|dev@example.org" },
  { "<a@example.com>", "a@example.com" },
  { "  < a@example.com >  ", "a@example.com" },
  { "a @ example.com", "a@example.com" },
  /* case is kept (case 023) */
  { "Jane.Doe@example.com, OPS-Team@Example.ORG",
    "Jane.Doe@example.com|OPS-Team@Example.ORG" },
  /* groups (cases 003, 020) */
  { "Project team: anna@example.com, Ben <ben@example.org>;",
    "anna@example.com|ben@example.org" },
  { "undisclosed-recipients:;", "" },
  { "undisclosed-recipients: ;", "" },
  { "undisclosed-recipients:", "" },
  { "a@example.com, Team: b@example.com;, c@example.com",
    "a@example.com|b@example.com|c@example.com" },
  { "Team: b@example.com ; , c@example.com", "b@example.com|c@example.com" },
  { "Team: , b@example.com,, ;", "b@example.com" },
  { "\"Quoted group\": b@example.com;", "b@example.com" },
  { "A: a@example.com;, B: b@example.com;", "a@example.com|b@example.com" },
  /* display names, quoted strings, comments (case 021) */
  { "\"Doe, Jane\" <jane.doe@example.com>, \"john smith\"@example.org",
    "jane.doe@example.com|\"john smith\"@example.org" },
  { "bob@example.net (Bob the Builder),\n\tCarol Night <carol@example.com>"
    " (night shift),\n\t\"Dave \\\"the admin\\\" Example\" <dave@example.org>",
    "bob@example.net|carol@example.com|dave@example.org" },
  { "(lead) a(x)@(y)example.com(z)", "a@example.com" },
  { "a@example.com (outer (nested (deeper)) comment)", "a@example.com" },
  { "a@example.com (a comment with \\) and \\( escaped)", "a@example.com" },
  { "(comma, in comment) a@example.com", "a@example.com" },
  { "\"<not@an.address>\" <real@example.com>", "real@example.com" },
  { "\"Semi; colon: and, comma\" <x@example.com>", "x@example.com" },
  { "John Q. Public <jqp@example.com>", "jqp@example.com" },
  { "=?UTF-8?Q?J=C3=BCrgen?= <j@example.net>", "j@example.net" },
  { "\"a@b\"@example.com", "\"a@b\"@example.com" },
  { "\"john\\\"smith\"@example.org", "\"john\\\"smith\"@example.org" },
  { "\"a b\"@example.org", "\"a b\"@example.org" },
  { "\"<x>\"@example.org", "\"<x>\"@example.org" },
  /* folding (case 011) */
  { "Alice Example <alice@example.com>, Bob Example <bob@example.org>,\r\n"
    " Carol Example <carol@example.net>",
    "alice@example.com|bob@example.org|carol@example.net" },
  { "a@example.com,\n b@example.com", "a@example.com|b@example.com" },
  { "a@example.com,\r\n\tb@example.com\r\n", "a@example.com|b@example.com" },
  { "a@example.com\n", "a@example.com" },
  { "\"john\r\n smith\"@example.org", "\"john smith\"@example.org" },
  { "Name\r\n <a@example.com>", "a@example.com" },
  /* empty elements and empty input */
  { "", "" },
  { "   ", "" },
  { "(just a comment)", "" },
  { ",", "" },
  { "a@example.com,", "a@example.com" },
  { ",,a@example.com,,b@example.com,", "a@example.com|b@example.com" },
  /* bare local names */
  { "root", "root" },
  { "root, admin@example.com", "root|admin@example.com" },
  { "first.last", "first.last" },
  { "Name <root>", "root" },
  { "\"odd name\"", "\"odd name\"" },
  /* domain literals */
  { "a@[192.0.2.1]", "a@[192.0.2.1]" },
  { "a@[IPv6:2001:db8::1]", "a@[IPv6:2001:db8::1]" },
  { "a@[ipv6:::1]", "a@[ipv6:::1]" },
  { "a@[x-tag:some-content]", "a@[x-tag:some-content]" },
  /* obsolete route, dropped */
  { "<@relay.example.net:a@example.com>", "a@example.com" },
  { "<@a.example,@b.example:a@example.com>", "a@example.com" },
  { "<@a.example, ,@b.example:a@example.com>", "a@example.com" },
  /* UTF-8 (RFC 6531/6532, case 033) */
  { "J\xc3\xbcrgen <j\xc3\xbcrgen@example.net>, "
    "\xe7\x94\xa8\xe6\x88\xb7@example.org",
    "j\xc3\xbcrgen@example.net|\xe7\x94\xa8\xe6\x88\xb7@example.org" },
  { "user@b\xc3\xbc\x63her.example", "user@b\xc3\xbc\x63her.example" },
  { "\"\xc3\xa9t\xc3\xa9 x\"@example.org",
    "\"\xc3\xa9t\xc3\xa9 x\"@example.org" },
  /* atext in local parts */
  { "a+tag@example.com, o'brien@example.com, {x}|y~z@example.com",
    "a+tag@example.com|o'brien@example.com|{x}|y~z@example.com" },
  { "a-b@sub-domain.example.com", "a-b@sub-domain.example.com" },
};

static void
test_list_ok (void)
{
  gsize i;

  for (i = 0; i < G_N_ELEMENTS (list_ok); i++)
    {
      g_autofree char *message = NULL;
      g_autofree char *got = parse_list_joined (list_ok[i].input, &message);

      if (got == NULL)
        g_error ("list %zu \"%s\": unexpected error: %s", i, list_ok[i].input,
                 message);
      g_assert_cmpstr (got, ==, list_ok[i].expect);
    }
}

typedef struct {
  const char *input;
  const char *message; /* must occur in the error message */
} ErrorCase;

static const ErrorCase list_errors[] = {
  { "<alice@example.com", "unbalanced '<'" },
  { "<alice@example.com, bob@example.org>", "unbalanced '<'" },
  { "bob@example.org, <alice@example.com", "\"<alice@example.com\"" },
  { "alice@example.com>", "unbalanced '>'" },
  { "> alice@example.com", "unbalanced '>'" },
  { "<<a@example.com>>", "unexpected '<'" },
  { "a@example.com <b@example.com>", "expected ','" },
  { "a@example.com b@example.com", "white space in domain" },
  { "good@example.com>\r\nRCPT TO:<evil@example.net>\r\nX-INJECTED",
    "unbalanced '>'" },
  { "a@example.com\r\nRCPT TO:<evil@example.net>", "line break" },
  { "a@example.com\nb@example.com",
    "line break not followed by white space" },
  { "a@example.com\rb@example.com", "line break" },
  { "a@example.com\r\n\r\n", "line break" },
  { "a@exa\x01mple.com", "control character" },
  { "a\x7f@example.com", "control character" },
  { "\"a\x01\"@example.com", "control character in quoted string" },
  { "a@example.com (x\x02)", "control character in comment" },
  { "\"unbalanced@example.com", "unbalanced '\"'" },
  { "\"Doe, Jane <jane@example.com>", "unbalanced '\"'" },
  { "\"ends in backslash\\", "unbalanced '\"'" },
  { "(unbalanced a@example.com", "unbalanced '('" },
  { "a@example.com (a (b)", "unbalanced '('" },
  { "a@example.com)", "unbalanced ')'" },
  { "@example.com", "empty local part" },
  { "<@example.com>", "empty local part" },
  { "Name <@example.com>", "empty local part" },
  { "<@>", "missing domain" },
  { "\"\"@example.com", "empty local part" },
  { "a@", "missing domain" },
  { "a@,b@example.com", "missing domain" },
  { "a..b@example.com", "double dot in local part" },
  { "a.@example.com", "trailing dot in local part" },
  { ".a@example.com", "leading dot in local part" },
  { "a. b@example.com", "white space in local part" },
  { "John Smith@example.com", "white space in local part" },
  { "\"a\".b@example.com", "quoted string mixed" },
  { "\"a\r\n\tb\"@example.com", "tab in quoted local part" },
  { "a@example.com.", "trailing dot in domain" },
  { "a@example..com", "empty label in domain" },
  { "a@.example.com", "empty label in domain" },
  { "a@exa_mple.com", "bad character '_' in domain" },
  { "a@-example.com", "starting or ending with '-'" },
  { "a@example-.com", "starting or ending with '-'" },
  { "a@b c.example.com", "white space in domain" },
  { "a@[192.0.2.300]", "bad domain literal" },
  { "a@[IPv6:not-an-address]", "bad IPv6" },
  { "a@[192.0.2.1", "unbalanced '['" },
  { "a@[192.0.2. 1]", "bad character in domain literal" },
  { "a@example.com[x]", "expected ',' before '['" },
  { "[192.0.2.1]", "unexpected '['" },
  { "John Smith, a@example.com", "not an address" },
  { "John Smith", "\"John Smith\"" },
  { "<>", "empty address '<>'" },
  { "Name <>", "empty address '<>'" },
  { "a@example.com;", "expected ','" },
  { "a;b@example.com", "unexpected ';'" },
  { "G: a@example.com, H: b@example.com;;", "group inside a group" },
  { ": a@example.com;", "group without a name" },
  { "G: a@example.com b@example.com;", "white space in domain" },
  { "G: <a@example.com;", "unbalanced '<'" },
  { "a\\b@example.com", "unexpected '\\'" },
  { "a]b@example.com", "unexpected ']'" },
  { "a@\xff.example.com", "invalid utf-8" },
  { "\xc3@example.com", "invalid utf-8" },
  { "a@example.com\xe2\x80\xa8x", "non-ASCII white space" },
  { "a\xc2\xa0"
    "b@example.com",
    "non-ASCII white space" },
  { "a\xc2\x85@example.com", "non-ASCII white space" },
  { "<@relay.example.net a@example.com>", "white space in domain" },
  { "<@relay.example.net;a@example.com>", "bad route" },
};

static void
test_list_errors (void)
{
  gsize i;

  for (i = 0; i < G_N_ELEMENTS (list_errors); i++)
    {
      g_autofree char *message = NULL;
      g_autofree char *got = parse_list_joined (list_errors[i].input,
                                                &message);

      if (got != NULL)
        g_error ("list %zu \"%s\": expected an error, got \"%s\"", i,
                 list_errors[i].input, got);
      if (strstr (message, list_errors[i].message) == NULL)
        g_error ("list %zu: message \"%s\" lacks \"%s\"", i, message,
                 list_errors[i].message);
      /* messages are one line and name the address */
      g_assert_null (strchr (message, '\n'));
      g_assert_null (strchr (message, '\r'));
      g_assert_true (g_str_has_prefix (message, "invalid address \""));
    }
}

static void
test_list_error_quotes_text (void)
{
  g_autofree char *message = NULL;
  g_autofree char *got = NULL;

  got = parse_list_joined ("ok@example.com, a..b@example.com, c@example.com",
                           &message);
  g_assert_null (got);
  g_assert_cmpstr (message, ==,
                   "invalid address \"a..b@example.com\": "
                   "double dot in local part");
  g_clear_pointer (&message, g_free);

  /* control characters are shown escaped, never raw */
  got = parse_list_joined ("x@example.com>\r\nRCPT TO:<y@example.net>",
                           &message);
  g_assert_null (got);
  g_assert_cmpstr (message, ==,
                   "invalid address \"x@example.com>\": unbalanced '>'");
  g_clear_pointer (&message, g_free);

  got = parse_list_joined ("a@b\x01", &message);
  g_assert_null (got);
  g_assert_cmpstr (message, ==,
                   "invalid address \"a@b\\x01\": control character");
  g_clear_pointer (&message, g_free);

  /* a long text is cut, keeping the end where the problem is */
  {
    g_autoptr (GString) s = g_string_new (NULL);
    int i;

    for (i = 0; i < 40; i++)
      g_string_append (s, "x");
    g_string_append (s, " Name Name Name Name Name Name Name Name <oops");
    got = parse_list_joined (s->str, &message);
    g_assert_null (got);
    g_assert_true (strstr (message, "...") != NULL);
    g_assert_true (strstr (message, "<oops\": unbalanced '<'") != NULL);
    g_assert_cmpuint (strlen (message), <, 160);
  }
}

static void
test_list_partial_output (void)
{
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;

  /* out is appended to, and may hold what came before an error */
  g_ptr_array_add (out, g_strdup ("before@example.com"));
  g_assert_true (rm_address_parse_list ("a@example.com", out, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (out->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (out, 1), ==, "a@example.com");

  g_assert_false (rm_address_parse_list ("b@example.com, <c", out, &error));
  g_assert_error (error, RM_ERROR, RM_ERROR_DATA);
}

static void
test_list_many (void)
{
  /* case 047: one long To: with many recipients, folded */
  g_autoptr (GString) s = g_string_new (NULL);
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;
  int i;

  for (i = 0; i < 500; i++)
    g_string_append_printf (s, "%suser%03d@example.org",
                            i == 0       ? ""
                            : i % 7 == 0 ? ",\r\n "
                                         : ", ",
                            i);
  g_assert_true (rm_address_parse_list (s->str, out, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (out->len, ==, 500);
  g_assert_cmpstr (g_ptr_array_index (out, 499), ==, "user499@example.org");
}

/* ---- command-line recipients ---------------------------------------------- */

typedef struct {
  const char *input;
  const char *expect;
} ArgCase;

static const ArgCase arg_ok[] = {
  { "user@example.com", "user@example.com" },
  { "<user@example.com>", "user@example.com" },
  { "Name <user@example.com>", "user@example.com" },
  { "\"Doe, Jane\" <jane@example.com>", "jane@example.com" },
  { "user@example.com (comment)", "user@example.com" },
  { " user@example.com ", "user@example.com" },
  { "root", "root" },
  { "<root>", "root" },
  { "Jane.Doe@example.com", "Jane.Doe@example.com" },
  { "OPS-Team@example.org", "OPS-Team@example.org" },
  { "\"john smith\"@example.org", "\"john smith\"@example.org" },
  { "j\xc3\xbcrgen@example.net", "j\xc3\xbcrgen@example.net" },
  { "\xe7\x94\xa8\xe6\x88\xb7@example.org",
    "\xe7\x94\xa8\xe6\x88\xb7@example.org" },
  { "a@[192.0.2.1]", "a@[192.0.2.1]" },
  { "<@relay.example:a@example.com>", "a@example.com" },
};

static const ErrorCase arg_errors[] = {
  /* case 043 */
  { "<alice@example.com", "unbalanced '<'" },
  /* case 045 */
  { "good@example.com>\r\nRCPT TO:<evil@example.net>\r\nX-INJECTED",
    "line break" },
  { "good@example.com\r\n", "line break" },
  { "good@example.com\n", "line break" },
  { "good@example.com\r", "line break" },
  { "good@example.com\tx", "control character" },
  { "a@example.com\x1b[31m", "control character" },
  { "a@example.com\x7f", "control character" },
  { "", "empty address" },
  { "   ", "empty address" },
  { "()", "empty address" },
  { "alice@example.com>", "unbalanced '>'" },
  { "alice@example.com>, RCPT TO:<evil@example.net", "unbalanced '>'" },
  { "a@example.com, b@example.com", "more than one address" },
  { ",a@example.com", "unexpected ','" },
  { "a@example.com b@example.com", "white space in domain" },
  { "a@example.com <b@example.com>", "unexpected '<'" },
  { "a@example.com;", "unexpected ';'" },
  { "Group: a@example.com;", "group syntax not allowed" },
  { "undisclosed-recipients:;", "group syntax not allowed" },
  { "<>", "empty address '<>'" },
  { "John Smith", "not an address" },
  { "\"john smith@example.org", "unbalanced '\"'" },
  { "a@example.com (x", "unbalanced '('" },
  { "a@example.com)", "unbalanced ')'" },
  { "@example.com", "empty local part" },
  { "a..b@example.com", "double dot" },
  { "a.@example.com", "trailing dot" },
  { "a@", "missing domain" },
  { "a@example.com.", "trailing dot in domain" },
  { "j\xfcrgen@example.net", "invalid utf-8" },
  { "\"a\\\r\"@example.com", "line break" },
};

static void
test_arg (void)
{
  gsize i;

  for (i = 0; i < G_N_ELEMENTS (arg_ok); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *got = rm_address_parse_arg (arg_ok[i].input, &error);

      if (got == NULL)
        g_error ("arg \"%s\": %s", arg_ok[i].input, error->message);
      g_assert_cmpstr (got, ==, arg_ok[i].expect);
    }
  for (i = 0; i < G_N_ELEMENTS (arg_errors); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *got = rm_address_parse_arg (arg_errors[i].input,
                                                   &error);

      if (got != NULL)
        g_error ("arg %zu: expected an error, got \"%s\"", i, got);
      g_assert_error (error, RM_ERROR, RM_ERROR_DATA);
      if (strstr (error->message, arg_errors[i].message) == NULL)
        g_error ("arg %zu: message \"%s\" lacks \"%s\"", i, error->message,
                 arg_errors[i].message);
      g_assert_null (strchr (error->message, '\n'));
      g_assert_null (strchr (error->message, '\r'));
    }
}

static void
test_arg_injection_message (void)
{
  g_autoptr (GError) error = NULL;
  char *got = rm_address_parse_arg (
      "good@example.com>\r\nRCPT TO:<evil@example.net>\r\nX-INJECTED",
      &error);

  g_assert_null (got);
  g_assert_cmpstr (error->message, ==,
                   "invalid address \"good@example.com>\\r\\nRCPT "
                   "TO:<evil@example.net>\\r\\nX-INJECTED\": line break");
}

static void
test_sender (void)
{
  static const ArgCase ok[] = {
    { "", "" },
    { "<>", "" },
    { " <> ", "" },
    { "bounces@example.com", "bounces@example.com" },
    { "<dev@example.com>", "dev@example.com" },
    { "Billing <billing@example.com>", "billing@example.com" },
    { "MAILER-DAEMON", "MAILER-DAEMON" },
  };
  static const ErrorCase bad[] = {
    { "<", "unbalanced '<'" },
    { "<>>", "unbalanced '>'" },
    { "a@example.com\r\nRCPT TO:<x@example.net>", "line break" },
    { "a@example.com, b@example.com", "more than one address" },
    { " ", "empty address" },
    { "<> a@example.com", "unexpected" },
  };
  gsize i;

  for (i = 0; i < G_N_ELEMENTS (ok); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *got = rm_address_parse_sender (ok[i].input, &error);

      g_assert_no_error (error);
      g_assert_cmpstr (got, ==, ok[i].expect);
    }
  for (i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *got = rm_address_parse_sender (bad[i].input, &error);

      g_assert_null (got);
      g_assert_error (error, RM_ERROR, RM_ERROR_DATA);
      if (strstr (error->message, bad[i].message) == NULL)
        g_error ("sender \"%s\": message \"%s\" lacks \"%s\"", bad[i].input,
                 error->message, bad[i].message);
    }
}

static void
test_arg_list (void)
{
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;

  g_assert_true (rm_address_parse_arg_list (
      "a@example.com, B <b@example.org>,root", out, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (out->len, ==, 3);
  g_assert_cmpstr (g_ptr_array_index (out, 0), ==, "a@example.com");
  g_assert_cmpstr (g_ptr_array_index (out, 1), ==, "b@example.org");
  g_assert_cmpstr (g_ptr_array_index (out, 2), ==, "root");

  g_assert_false (rm_address_parse_arg_list (",", out, &error));
  g_assert_error (error, RM_ERROR, RM_ERROR_DATA);
  g_assert_nonnull (strstr (error->message, "no address"));
  g_clear_error (&error);

  g_assert_false (
      rm_address_parse_arg_list ("a@example.com,\r\nb@x", out, &error));
  g_assert_error (error, RM_ERROR, RM_ERROR_DATA);
  g_clear_error (&error);

  g_assert_false (
      rm_address_parse_arg_list ("G: a@example.com;", out, &error));
  g_assert_error (error, RM_ERROR, RM_ERROR_DATA);
  g_clear_error (&error);

  g_assert_false (
      rm_address_parse_arg_list ("a@example.com, <b", out, &error));
  g_assert_error (error, RM_ERROR, RM_ERROR_DATA);
}

/* ---- mailbox predicates --------------------------------------------------- */

static void
test_equal (void)
{
  g_assert_true (rm_address_equal ("ops@example.com", "ops@example.com"));
  g_assert_true (rm_address_equal ("ops@example.com", "ops@EXAMPLE.Com"));
  g_assert_false (rm_address_equal ("Ops@example.com", "ops@example.com"));
  g_assert_false (rm_address_equal ("ops@example.com", "ops@example.co"));
  g_assert_false (rm_address_equal ("ops@example.com", "ops"));
  g_assert_false (rm_address_equal ("ops", "ops@example.com"));
  g_assert_true (rm_address_equal ("root", "root"));
  g_assert_false (rm_address_equal ("root", "Root"));
  g_assert_false (rm_address_equal ("ab@c.d", "a@bc.d"));
  g_assert_true (
      rm_address_equal ("\"a@b\"@Example.com", "\"a@b\"@example.COM"));
  g_assert_false (
      rm_address_equal ("\"a@b\"@example.com", "\"a@B\"@example.com"));
  g_assert_true (rm_address_equal ("a@[192.0.2.1]", "a@[192.0.2.1]"));
  g_assert_true (rm_address_equal ("a@[IPv6:::1]", "a@[ipv6:::1]"));
  /* non-ASCII is compared exactly */
  g_assert_false (
      rm_address_equal ("a@\xc3\xa9.example", "a@\xc3\x89.example"));
  g_assert_true (rm_address_equal ("", ""));
}

static void
test_has_domain (void)
{
  g_assert_true (rm_address_has_domain ("a@example.com"));
  g_assert_true (rm_address_has_domain ("\"a b\"@example.com"));
  g_assert_false (rm_address_has_domain ("root"));
  g_assert_false (rm_address_has_domain ("\"a@b\""));
  g_assert_false (rm_address_has_domain (""));
  g_assert_true (rm_address_has_domain ("\"a\\\"@b\"@c"));
}

static void
test_is_ascii (void)
{
  g_assert_true (rm_address_is_ascii (""));
  g_assert_true (rm_address_is_ascii ("a@example.com"));
  g_assert_true (rm_address_is_ascii ("\x7f"));
  g_assert_false (rm_address_is_ascii ("j\xc3\xbcrgen@example.net"));
  g_assert_false (rm_address_is_ascii ("a@example.com\x80"));
}

/* ---- invariants on hostile input ------------------------------------------- */

static void
check_all_safe (const char *text)
{
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;
  g_autofree char *one = NULL;
  g_autofree char *sender = NULL;
  guint i;

  if (!rm_address_parse_list (text, out, &error))
    {
      g_assert_error (error, RM_ERROR, RM_ERROR_DATA);
      g_assert_null (strchr (error->message, '\n'));
      g_assert_null (strchr (error->message, '\r'));
      g_clear_error (&error);
    }
  for (i = 0; i < out->len; i++)
    assert_safe_mailbox (g_ptr_array_index (out, i));

  one = rm_address_parse_arg (text, &error);
  if (one == NULL)
    {
      g_assert_error (error, RM_ERROR, RM_ERROR_DATA);
      g_clear_error (&error);
    }
  else
    {
      assert_safe_mailbox (one);
      /* an argument with a control character is never accepted */
      for (i = 0; text[i] != '\0'; i++)
        g_assert_false ((unsigned char) text[i] < 0x20 || text[i] == 0x7f);
    }

  sender = rm_address_parse_sender (text, &error);
  if (sender == NULL)
    g_assert_error (error, RM_ERROR, RM_ERROR_DATA);
  else if (*sender != '\0')
    assert_safe_mailbox (sender);
}

static void
test_injection (void)
{
  static const char *const inputs[] = {
    "good@example.com>\r\nRCPT TO:<evil@example.net>\r\nX-INJECTED",
    "good@example.com\r\nRCPT TO:<evil@example.net>",
    "good@example.com\nRCPT TO:<evil@example.net>",
    "good@example.com\rRCPT TO:<evil@example.net>",
    "<good@example.com>\r\n RCPT TO:<evil@example.net>",
    "\"good\r\n\"@example.com",
    "\"good\r\nRCPT TO:<evil@example.net>\"@example.com",
    "(x\r\nRCPT TO:<evil@example.net>)good@example.com",
    "good@example.com> SIZE=1",
    "good@example.com> NOTIFY=NEVER",
    "<good@example.com> NOTIFY=NEVER",
    "<good@example.com NOTIFY=NEVER>",
    "good@[192.0.2.1]>\r\nDATA",
    "good@[192.0.2.1\r\n]",
    "\"a\\\r\nb\"@example.com",
    "<good@example.com\r\n>",
    "good@example.com\x85RCPT",
    "good@example.com\xe2\x80\xa8RCPT",
  };
  gsize i;

  for (i = 0; i < G_N_ELEMENTS (inputs); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *got = rm_address_parse_arg (inputs[i], &error);

      /* none of these is one clean address on the command line */
      if (got != NULL)
        g_error ("injection %zu accepted as \"%s\"", i, got);
      g_assert_error (error, RM_ERROR, RM_ERROR_DATA);
      check_all_safe (inputs[i]);
    }
}

/* Random strings over an alphabet of troublemakers: whatever the parser
 * accepts must still be a clean mailbox. Bounded; the seed is GTest's
 * (--seed to repeat). */
static void
test_random (void)
{
  static const char *const pieces[] = {
    "a",           "b",         "Z",        "0",       "-",
    ".",           "..",        "@",        "<",       ">",
    "\"",          "\\",        "(",        ")",       ",",
    ";",           ":",         "[",        "]",       " ",
    "\t",          "\r",        "\n",       "\r\n ",   "\n\t",
    "\x01",        "\x7f",      "\xc3\xbc", "\xff",    "\xc3",
    "example.com", "192.0.2.1", "IPv6:",    "::1",     "=?utf-8?q?x?=",
    "user",        "\"q s\"",   "(c)",      "<a@b.c>", "g:",
    "_",           "+",         "'",
  };
  int n = g_test_slow () ? 200000 : 20000;
  int i;

  for (i = 0; i < n; i++)
    {
      g_autoptr (GString) s = g_string_new (NULL);
      int len = g_test_rand_int_range (0, 12);
      int j;

      for (j = 0; j < len; j++)
        g_string_append (
            s, pieces[g_test_rand_int_range (0, G_N_ELEMENTS (pieces))]);
      check_all_safe (s->str);
    }
}

/* ---- aliases -------------------------------------------------------------- */

typedef struct {
  char *dir;
  char *path;
} AliasFixture;

static void
alias_setup (AliasFixture *fx, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr (GError) error = NULL;

  fx->dir = g_dir_make_tmp ("rampmail-test-XXXXXX", &error);
  g_assert_no_error (error);
  fx->path = g_build_filename (fx->dir, "aliases", NULL);
}

static void
alias_teardown (AliasFixture *fx, gconstpointer data G_GNUC_UNUSED)
{
  g_unlink (fx->path);
  g_rmdir (fx->dir);
  g_free (fx->path);
  g_free (fx->dir);
}

static void
write_file (const char *path, const char *text)
{
  g_autoptr (GError) error = NULL;

  g_file_set_contents (path, text, -1, &error);
  g_assert_no_error (error);
}

/* rm_aliases_resolve's result joined with '|'. */
static char *
resolve (const RmAliases *aliases, const char *domain, const char *mailbox)
{
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func (g_free);

  rm_aliases_resolve (aliases, domain, mailbox, out);
  g_ptr_array_add (out, NULL);
  return g_strjoinv ("|", (char **) out->pdata);
}

#define assert_resolves(aliases, domain, mailbox, expect)                    \
  G_STMT_START                                                               \
  {                                                                          \
    g_autofree char *got_ = resolve ((aliases), (domain), (mailbox));        \
    g_assert_cmpstr (got_, ==, (expect));                                    \
  }                                                                          \
  G_STMT_END

static void
test_aliases_load (AliasFixture *fx, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RmAliases) aliases = NULL;

  write_file (fx->path,
              "# system aliases\n"
              "\n"
              "root: admin@example.com, ops@example.org\n"
              "   # indented comment\n"
              "postmaster: root\n"
              "webmaster:Web Team <web@example.net>\r\n"
              "  team  :  a, \"b c\"@example.com (second),\tFirst.Last\n"
              "list: Members: x@example.com, y;\n"
              "\t\n"
              "last: final@example.com");
  aliases = rm_aliases_load (fx->path, &error);
  g_assert_no_error (error);
  g_assert_nonnull (aliases);
  g_assert_cmpuint (rm_aliases_count (aliases), ==, 6);

  assert_resolves (aliases, "example.com", "root",
                   "admin@example.com|ops@example.org");
  /* not recursive: root on the right side is only qualified */
  assert_resolves (aliases, "example.com", "postmaster", "root@example.com");
  assert_resolves (aliases, "example.com", "webmaster", "web@example.net");
  assert_resolves (aliases, "local.example", "team",
                   "a@local.example|\"b c\"@example.com|"
                   "First.Last@local.example");
  assert_resolves (aliases, "example.com", "list",
                   "x@example.com|y@example.com");
  assert_resolves (aliases, "example.com", "last", "final@example.com");
  /* no entry, no default: qualified */
  assert_resolves (aliases, "example.com", "nobody", "nobody@example.com");
  /* exact match only */
  assert_resolves (aliases, "example.com", "Root", "Root@example.com");
  /* a mailbox with a domain is never looked up */
  assert_resolves (aliases, "example.com", "root@example.com",
                   "root@example.com");
  assert_resolves (aliases, "example.com", "root@elsewhere.example",
                   "root@elsewhere.example");
}

static void
test_aliases_default (AliasFixture *fx, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RmAliases) aliases = NULL;

  write_file (fx->path, "default: catchall@example.com\n"
                        "root: admin\n");
  aliases = rm_aliases_load (fx->path, &error);
  g_assert_no_error (error);

  assert_resolves (aliases, "example.org", "root", "admin@example.org");
  assert_resolves (aliases, "example.org", "cron", "catchall@example.com");
  assert_resolves (aliases, "example.org", "default", "catchall@example.com");
  assert_resolves (aliases, "example.org", "user@example.net",
                   "user@example.net");
}

static void
test_aliases_missing (AliasFixture *fx, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RmAliases) aliases = NULL;

  aliases = rm_aliases_load (fx->path, &error);
  g_assert_no_error (error);
  g_assert_nonnull (aliases);
  g_assert_cmpuint (rm_aliases_count (aliases), ==, 0);
  assert_resolves (aliases, "example.com", "root", "root@example.com");
}

static void
test_aliases_empty_file (AliasFixture *fx, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RmAliases) aliases = NULL;

  write_file (fx->path, "");
  aliases = rm_aliases_load (fx->path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (rm_aliases_count (aliases), ==, 0);
}

static void
test_aliases_null (void)
{
  g_autoptr (GPtrArray) out = g_ptr_array_new_with_free_func (g_free);

  assert_resolves (NULL, "example.com", "root", "root@example.com");
  assert_resolves (NULL, "example.com", "a@example.net", "a@example.net");
  assert_resolves (NULL, "example.com", "\"a b\"", "\"a b\"@example.com");
  /* no domain to qualify with: left bare rather than lost */
  assert_resolves (NULL, NULL, "root", "root");
  assert_resolves (NULL, "", "root", "root");
  g_assert_cmpuint (rm_aliases_count (NULL), ==, 0);
  rm_aliases_free (NULL);

  /* out is appended to */
  g_ptr_array_add (out, g_strdup ("x@example.com"));
  rm_aliases_resolve (NULL, "example.com", "root", out);
  g_assert_cmpuint (out->len, ==, 2);
}

static void
test_aliases_bad (AliasFixture *fx, gconstpointer data G_GNUC_UNUSED)
{
  static const struct {
    const char *text;
    const char *message;
  } cases[] = {
    { "root: admin@example.com\nthis line has no colon\n",
      ":2: expected \"name: address, ...\"" },
    { "# c\n\nroot: <admin@example.com\n",
      ":3: alias \"root\": invalid "
      "address \"<admin@example.com\": unbalanced '<'" },
    { "root:\n", ":1: alias \"root\": no address" },
    { "root: undisclosed-recipients:;\n", ":1: alias \"root\": no address" },
    { ": admin@example.com\n", ":1: empty alias name" },
    { "root user: admin@example.com\n", ":1: bad alias name" },
    { "root@example.com: admin@example.com\n", ":1: bad alias name" },
    { "<root>: admin@example.com\n", ":1: bad alias name" },
    { "\"root\": admin@example.com\n", ":1: bad alias name" },
    { "a: x@example.com\nb: y@example.com\na: z@example.com\n",
      ":3: alias \"a\" already defined on line 1" },
    { "root: a@example.com b@example.com\n", ":1: alias \"root\"" },
    { "root: a@example.com # trailing comment\n", ":1: alias \"root\"" },
    { "root: a@example.com\n  continued@example.com\n",
      ":2: expected \"name: address, ...\"" },
    { "ok: a@example.com\nroot: a@example.com\x01\n", ":2: alias \"root\"" },
  };
  gsize i;

  for (i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (RmAliases) aliases = NULL;
      g_autofree char *expect = NULL;

      write_file (fx->path, cases[i].text);
      aliases = rm_aliases_load (fx->path, &error);
      g_assert_null (aliases);
      g_assert_error (error, RM_ERROR, RM_ERROR_CONFIG);
      expect = g_strconcat (fx->path, cases[i].message, NULL);
      if (!g_str_has_prefix (error->message, expect))
        g_error ("aliases %zu: \"%s\" does not start with \"%s\"", i,
                 error->message, expect);
    }
}

static void
test_aliases_nul (AliasFixture *fx, gconstpointer data G_GNUC_UNUSED)
{
  static const char text[] = "a: x@example.com\nb: y@exa\0mple.com\n";
  g_autoptr (GError) error = NULL;
  g_autoptr (RmAliases) aliases = NULL;
  g_autofree char *expect = NULL;

  g_file_set_contents (fx->path, text, sizeof text - 1, &error);
  g_assert_no_error (error);
  aliases = rm_aliases_load (fx->path, &error);
  g_assert_null (aliases);
  g_assert_error (error, RM_ERROR, RM_ERROR_CONFIG);
  expect = g_strconcat (fx->path, ":2: ", NULL);
  g_assert_true (g_str_has_prefix (error->message, expect));
}

static void
test_aliases_unreadable (AliasFixture *fx, gconstpointer data G_GNUC_UNUSED)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (RmAliases) aliases = NULL;

  /* a directory where the file should be */
  g_assert_cmpint (g_mkdir (fx->path, 0700), ==, 0);
  aliases = rm_aliases_load (fx->path, &error);
  g_rmdir (fx->path);
  g_assert_null (aliases);
  g_assert_nonnull (error);
  g_assert_true (error->domain == RM_ERROR);
  g_assert_nonnull (strstr (error->message, fx->path));
}

/* Header address lists: bare local names get the domain, nothing else
 * changes. */
static void
test_qualify (void)
{
  static const struct {
    const char *in, *out; /* out NULL: unchanged */
  } cases[] = {
    { "root", "root@example.test" },
    { "root (Cron Daemon)", "root@example.test (Cron Daemon)" },
    { "(Cron Daemon) root", "(Cron Daemon) root@example.test" },
    { "Ops <ops>", "Ops <ops@example.test>" },
    { "\"Doe, John\" <jd>, x@example.org",
      "\"Doe, John\" <jd@example.test>, x@example.org" },
    { "a, b@example.org, c",
      "a@example.test, b@example.org, c@example.test" },
    { "first.last", "first.last@example.test" },
    { "\"john smith\"", "\"john smith\"@example.test" },
    { "Team: a, b@example.org;", "Team: a@example.test, b@example.org;" },
    { "undisclosed-recipients:;", NULL },
    { "root@localhost", NULL },
    { "Root <root@localhost> (admin)", NULL },
    { "<>", NULL },
    { "<@relay.example:user@example.org>", NULL },
    { "John Smith", NULL },
    { "(just a comment)", NULL },
    { "", NULL },
    { "\"unclosed", NULL },
    { "root (unclosed", NULL },
    { "Ops <ops", NULL },
    { "a <b<c>", NULL },
    { "user@[192.0.2.1]", NULL },
    { "\"\"", NULL },
    { "\"\" (nobody)", NULL },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *got = rm_address_qualify_list (cases[i].in,
                                                      "example.test");

      g_test_message ("in: %s", cases[i].in);
      g_assert_cmpstr (got, ==, cases[i].out);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/address/list/ok", test_list_ok);
  g_test_add_func ("/address/list/errors", test_list_errors);
  g_test_add_func ("/address/list/error-quotes-text",
                   test_list_error_quotes_text);
  g_test_add_func ("/address/list/partial-output", test_list_partial_output);
  g_test_add_func ("/address/list/many", test_list_many);
  g_test_add_func ("/address/arg", test_arg);
  g_test_add_func ("/address/arg/injection-message",
                   test_arg_injection_message);
  g_test_add_func ("/address/sender", test_sender);
  g_test_add_func ("/address/arg-list", test_arg_list);
  g_test_add_func ("/address/equal", test_equal);
  g_test_add_func ("/address/has-domain", test_has_domain);
  g_test_add_func ("/address/is-ascii", test_is_ascii);
  g_test_add_func ("/address/injection", test_injection);
  g_test_add_func ("/address/random", test_random);
  g_test_add_func ("/address/qualify", test_qualify);

  g_test_add ("/aliases/load", AliasFixture, NULL, alias_setup,
              test_aliases_load, alias_teardown);
  g_test_add ("/aliases/default", AliasFixture, NULL, alias_setup,
              test_aliases_default, alias_teardown);
  g_test_add ("/aliases/missing", AliasFixture, NULL, alias_setup,
              test_aliases_missing, alias_teardown);
  g_test_add ("/aliases/empty-file", AliasFixture, NULL, alias_setup,
              test_aliases_empty_file, alias_teardown);
  g_test_add_func ("/aliases/null", test_aliases_null);
  g_test_add ("/aliases/bad", AliasFixture, NULL, alias_setup,
              test_aliases_bad, alias_teardown);
  g_test_add ("/aliases/nul", AliasFixture, NULL, alias_setup,
              test_aliases_nul, alias_teardown);
  g_test_add ("/aliases/unreadable", AliasFixture, NULL, alias_setup,
              test_aliases_unreadable, alias_teardown);

  return g_test_run ();
}
