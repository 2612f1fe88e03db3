/* Plugin loading with libltdl.
 *
 * A plugin named NAME is the module PLUGIN_DIR/NAME (NAME.la or NAME.so).
 * Loaded modules stay loaded until the process exits.
 */
#ifndef RM_MODULES_H
#define RM_MODULES_H

#include <glib.h>
#include <rampmail/plugin.h>

/* Loads plugin name of the given kind from dir and returns its ops table.
 * A missing module, a missing rampmail_plugin symbol, another ABI version,
 * another kind or another name is RM_ERROR_CONFIG naming the module and
 * the path. */
const void *rm_modules_load (const char *dir, RmPluginKind kind,
                             const char *name, GError **error);

/* The libltdl part of it, for rampmail's own modules too (mime.h): opens
 * dir/name (NAME.la or NAME.so), keeps it loaded for good and returns the
 * address of symbol in it. NULL with error (code), naming what ("the MIME
 * module") and the path, if either is missing. *path (may be NULL) gets
 * the module's path without suffix. */
const void *rm_modules_open (const char *dir, const char *name,
                             const char *symbol, const char *what, int code,
                             char **path, GError **error);

#endif
