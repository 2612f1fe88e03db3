/* Mail addresses: RFC 5322 address lists and sendmail command-line
 * recipients, reduced to the RFC 5321 mailboxes that go into MAIL FROM and
 * RCPT TO.
 *
 * A mailbox is returned as "local@domain" with the local part exactly as
 * written (case kept; a quoted local part keeps its quotes, e.g.
 * "\"john smith\"@example.org"), or as a bare local name ("root") when the
 * input has no domain; the caller qualifies bare names (aliases.h).
 * Display names, comments, angle brackets and group names are dropped.
 */
#ifndef RM_ADDRESS_H
#define RM_ADDRESS_H

#include <glib.h>

/* Parses an address-list header value (may still contain folding CRLF or
 * LF + WSP, which count as white space). Every mailbox found, including
 * the members of groups, is appended to out as a newly allocated string
 * (out must free its elements with g_free). An empty group adds nothing;
 * an empty value adds nothing. On a syntax error returns FALSE with
 * RM_ERROR_DATA and a message that quotes the offending text; out may then
 * hold some of the mailboxes. */
gboolean rm_address_parse_list (const char *text, GPtrArray *out,
                                GError **error);

/* Parses one recipient given on the command line: "user@domain",
 * "<user@domain>", "Name <user@domain>" or a bare local name. Returns a
 * newly allocated mailbox, or NULL with RM_ERROR_DATA if the argument holds
 * CR, LF or another control character, is empty, has unbalanced brackets
 * or quotes, or is not one syntactically valid mailbox. */
char *rm_address_parse_arg (const char *arg, GError **error);

/* Like rm_address_parse_arg, but the argument may hold a comma-separated
 * list ("a@example.com, b@example.org"), as sendmail accepts; group
 * syntax is refused. Appends the mailboxes to out; an argument that holds
 * no mailbox at all (",", "()") is an RM_ERROR_DATA. */
gboolean rm_address_parse_arg_list (const char *arg, GPtrArray *out,
                                    GError **error);

/* Parses a -f / -r sender argument: like rm_address_parse_arg, but "" and
 * "<>" give "" (the null sender). */
char *rm_address_parse_sender (const char *arg, GError **error);

/* TRUE if a and b are the same mailbox: local parts compared exactly,
 * domains without regard to ASCII case. */
gboolean rm_address_equal (const char *a, const char *b);

/* TRUE if mailbox has a domain part. */
gboolean rm_address_has_domain (const char *mailbox);

/* For a header field that holds an address list (From, To, Cc, ...):
 * returns a copy of text in which every address without a domain ("root",
 * "root (Cron Daemon)", "Ops <ops>") has "@domain" appended, display
 * names, comments, quoting, group names and spacing kept as written; NULL
 * when there is nothing to change, and when text is not well formed
 * (unclosed quotes, comments or brackets), which is then left alone. */
char *rm_address_qualify_list (const char *text, const char *domain);

/* TRUE if every octet of s is 7-bit. */
gboolean rm_address_is_ascii (const char *s);

#endif
