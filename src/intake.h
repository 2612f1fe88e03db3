/* Message intake: standard input to a spool file in wire form.
 *
 * rm_intake_stream() reads the caller's message once, line by line, and
 * writes it to the spool file so that a transport can send it as it is:
 *
 *  - LF, CRLF and bare CR each end one line; every line leaves with CRLF,
 *    and the last line gets one even if the input lacked it;
 *  - NUL octets are dropped (they may not appear in mail);
 *  - leading mbox "From " lines are dropped;
 *  - without ignore_dots a line holding only "." ends the input;
 *  - the header section ends at the first empty line or at the first line
 *    that is neither a field nor a continuation; a blank line is inserted
 *    before the body when the input had none;
 *  - Bcc and Resent-Bcc fields are removed; repeated To or Cc fields are
 *    merged into one (libESMTP would drop the repeats);
 *  - fields with 8-bit octets are downgraded to RFC 2047 encoded-words,
 *    since libESMTP cannot send SMTPUTF8 (see mime.h);
 *  - a field with a line over 998 octets is folded at white space;
 *  - From, Date and Message-ID are added at the end of the header section
 *    when missing; a Received field, when given, goes first.
 *
 * Only the header section is held in memory (at most RM_INTAKE_MAX_HEADER
 * octets); the body streams through. Body lines over 998 octets are left
 * as they are and reported, so the caller can rewrite the message
 * (rm_mime_limit_lines).
 */
#ifndef RM_INTAKE_H
#define RM_INTAKE_H

#include <glib.h>

#define RM_INTAKE_MAX_HEADER (4 * 1024 * 1024)
#define RM_MAX_LINE 998

typedef struct {
  gboolean ignore_dots;     /* -i: a lone "." is text */
  const char *default_from; /* From: value to add when missing */
  const char *message_id;   /* Message-ID value (with <>) to add */
  const char *received;     /* Received value put first, or NULL */
  const char *domain;       /* appended to bare local names in address
                             * fields (From, To, ...), or NULL */
  GDateTime *now;           /* for an added Date: */
} RmIntakeParams;

typedef struct {
  GPtrArray *to;          /* unfolded values of To, Cc and Bcc (char *) */
  GPtrArray *resent;      /* unfolded values of Resent-To, -Cc and -Bcc */
  gboolean eight_bit;     /* the body holds octets above 127 */
  gboolean long_lines;    /* a body line is longer than RM_MAX_LINE */
  gboolean dkim;          /* a DKIM-Signature field is present */
  char *from;             /* the unfolded value of the (first) From field,
                          * as sent */
  guint nul_removed;      /* NUL octets dropped */
  guint fields_encoded;   /* fields downgraded to encoded-words */
  guint fields_folded;    /* over-long fields folded */
  guint fields_qualified; /* address fields given the domain */
  gint64 size;            /* octets written */
} RmIntakeResult;

/* Reads in_fd to its end (or a lone dot) and writes out_fd. result is
 * initialised here and must be cleared with rm_intake_result_clear(), on
 * failure too. Errors: RM_ERROR_IO for read or write failures (a full disk
 * gives RM_ERROR_TEMPFAIL), RM_ERROR_DATA for a header section over
 * RM_INTAKE_MAX_HEADER, RM_ERROR_UNAVAILABLE when a field has 8-bit text
 * and the MIME module cannot be loaded (see mime.h). */
gboolean rm_intake_stream (int in_fd, int out_fd,
                           const RmIntakeParams *params,
                           RmIntakeResult *result, GError **error);

void rm_intake_result_clear (RmIntakeResult *result);

/* An RFC 5322 date in the C locale: "Fri, 04 Dec 2026 18:30:00 +0100". */
char *rm_intake_format_date (GDateTime *when);

/* Folds the one-line field text at white space into lines of at most 78
 * octets where the words allow, joined by CRLF (no final CRLF). */
char *rm_intake_fold (const char *field);

#endif
