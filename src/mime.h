/* The MIME work done with GMime: what hand-written code would get wrong.
 *
 * GMime is not linked into rampmail: rm_mime_encode_field() and
 * rm_mime_limit_lines() load the module "mime" from the plugin directory
 * the first time one of them is called (see mime-module.h), so that the
 * common plain-ASCII message never pays for GMime. When the module cannot
 * be loaded they fail with RM_ERROR_UNAVAILABLE (EX_UNAVAILABLE), naming
 * the module's path. rm_mime_rewrite_from() needs no GMime.
 *
 * libESMTP 1.1 cannot send the SMTPUTF8 parameter, so raw UTF-8 header
 * fields (RFC 6532) are downgraded to RFC 2047 encoded-words before they
 * are queued; a reader sees the same text. Addresses themselves cannot be
 * downgraded: a message with a non-ASCII envelope address is refused at
 * submission (see doc/design.md).
 */
#ifndef RM_MIME_H
#define RM_MIME_H

#include <glib.h>

/* The directory to load the MIME module from: the configuration's
 * plugin_dir, set once it is loaded; RM_PLUGINDIR until then. */
void rm_mime_set_module_dir (const char *dir);

/* Loads the MIME module now (for --check-config): FALSE with
 * RM_ERROR_UNAVAILABLE naming the path when it cannot be. */
gboolean rm_mime_check_available (GError **error);

/* Returns "Name: value" with the non-ASCII text of value encoded as
 * RFC 2047 encoded-words in UTF-8 (display names of address fields,
 * unstructured text elsewhere), on one line. value is the unfolded field
 * value; octets that are not UTF-8 are read as ISO-8859-1. NULL with
 * error only when the MIME module cannot be loaded. */
char *rm_mime_encode_field (const char *name, const char *value,
                            GError **error);

/* Copies the message at in_fd (from its start) to out_fd, re-encoding
 * every part that has a line over 998 octets as quoted-printable, so that
 * no line of the result is longer. Header fields are kept as they are.
 * Fails with RM_ERROR_IO or RM_ERROR_DATA, or RM_ERROR_UNAVAILABLE when
 * the MIME module cannot be loaded. */
gboolean rm_mime_limit_lines (int in_fd, int out_fd, GError **error);

/* For a server without 8BITMIME (RFC 6152, section 3): returns a new file
 * (memfd, offset 0) holding the message at fd with every part that is not
 * 7-bit re-encoded as quoted-printable or base64; the header section is
 * 7-bit already (intake). -1 with error on failure. */
int rm_mime_downgrade (int fd, GError **error);

/* For a server that sends as its account (from = account): returns a new
 * file (memfd, offset 0) holding the message at fd with its From field
 * replaced by <account>, and the old From kept as Reply-To when the
 * message has no Reply-To. -1 with error on failure. */
int rm_mime_rewrite_from (int fd, const char *account, GError **error);

#endif
