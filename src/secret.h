/* Server passwords: read when a session needs them, never stored in the
 * queue, never logged, wiped after use.
 *
 * password_file: the first line of the file. The file must be a regular
 * file that others cannot read (no "o+r"), so a password cannot leak
 * through a world-readable file by mistake.
 * password_command: the first line the command (run by /bin/sh -c, with
 * standard input from /dev/null) prints; it must exit 0.
 */
#ifndef RM_SECRET_H
#define RM_SECRET_H

#include <glib.h>

#include "conf.h"

/* The password of server, or NULL with error (RM_ERROR_CONFIG naming the
 * file or the command, never the password). NULL without error when the
 * server has no user. Free with rm_secret_free. */
char *rm_secret_read (const RmServerConf *server, GError **error);

/* Overwrites and frees a password. */
void rm_secret_free (char *secret);

#endif
