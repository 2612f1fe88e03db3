/* The aliases file: local names mapped to addresses.
 *
 * Format (msmtp-like): one alias per line, "name: address, address, ...";
 * blank lines and lines starting with '#' are ignored; continuation lines
 * are not supported. The name "default" applies to every local name that
 * has no entry of its own. An address on the right side that has no domain
 * is qualified with the configured domain; aliases are not expanded
 * recursively.
 */
#ifndef RM_ALIASES_H
#define RM_ALIASES_H

#include <glib.h>

typedef struct RmAliases RmAliases;

/* Loads path. A missing file gives an empty table, not an error. A line
 * that is not "name: list" or whose list does not parse gives
 * RM_ERROR_CONFIG naming the file and line number, and so does a name
 * defined twice or a name that is not a plain local name ("root",
 * "first.last"). A file that exists but cannot be read gives
 * RM_ERROR_NOPERM (permission) or RM_ERROR_CONFIG. */
RmAliases *rm_aliases_load (const char *path, GError **error);
void rm_aliases_free (RmAliases *aliases);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RmAliases, rm_aliases_free)

/* Number of names defined (including "default"); 0 for NULL. */
guint rm_aliases_count (const RmAliases *aliases);

/* Turns one mailbox into the final envelope addresses, appended to out
 * (newly allocated strings). A mailbox with a domain is copied as it is.
 * A bare local name is looked up (exact match, then "default"); failing
 * that it becomes name@domain. aliases may be NULL. With a NULL or empty
 * domain, bare names are appended unqualified. */
void rm_aliases_resolve (const RmAliases *aliases, const char *domain,
                         const char *mailbox, GPtrArray *out);

#endif
