/* The setgid model: rampmail may be installed setgid to a group that owns
 * the queue, the state and the password files (doc/install-debian.md), so
 * that any local user can submit while only rampmail reads those files.
 *
 * The submitting user is always the real uid. A caller who is not root
 * and names another configuration (-C) loses the group before anything
 * is read, the way sendmail treats -C, unless root owns that file and its
 * folder and nobody else can write them; and every path drops the group
 * as soon as it no longer needs it.
 */
#ifndef RM_PRIVS_H
#define RM_PRIVS_H

#include <glib.h>

/* TRUE if the effective group differs from the caller's (setgid). */
gboolean rm_privs_elevated (void);

/* TRUE if path is a configuration the caller cannot have written: a
 * regular file owned by root and writable by nobody else, in a folder
 * owned by root and writable by nobody else. Only such a file keeps the
 * group when a caller who is not root names it with -C. */
gboolean rm_privs_trusted_file (const char *path);

/* Drops the setgid group for good (real, effective and saved gid become
 * the caller's). Aborts the process if that fails, as continuing with a
 * group that should be gone is never safe. */
void rm_privs_drop (void);

#endif
