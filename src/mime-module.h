/* The MIME module: the GMime half of mime.h, loaded when first needed.
 *
 * GMime and the GObject stack it pulls in cost every process about 4.5 M
 * instructions of dynamic linking and 2.4 MiB of memory, yet only rare
 * messages need them (8-bit header fields, body lines over 998 octets).
 * So src/mime-gmime.c is built as the libtool module "mime" in the plugin
 * directory, and src/mime.c opens it with libltdl the first time
 * rm_mime_encode_field() or rm_mime_limit_lines() is called; it then
 * stays loaded.
 *
 * This is rampmail's own interface, not the plugin ABI of
 * <rampmail/plugin.h>: the module exports one symbol,
 * RM_MIME_MODULE_SYMBOL, an RmMimeModule whose version must be
 * RM_MIME_MODULE_VERSION; bump it whenever RmMimeModule or the meaning of
 * a slot changes, so that a stale module is refused.
 */
#ifndef RM_MIME_MODULE_H
#define RM_MIME_MODULE_H

#include <glib.h>

#define RM_MIME_MODULE_NAME "mime"
#define RM_MIME_MODULE_SYMBOL "rampmail_mime_module"
#define RM_MIME_MODULE_VERSION 2

typedef struct {
  unsigned version; /* RM_MIME_MODULE_VERSION; stays the first member */
  gsize size;       /* sizeof (RmMimeModule) */
  /* The work of rm_mime_encode_field(), which cannot fail once loaded. */
  char *(*encode_field) (const char *name, const char *value);
  /* The work of rm_mime_limit_lines(). */
  gboolean (*limit_lines) (int in_fd, int out_fd, GError **error);
  /* The work of rm_mime_downgrade(): every part that is not 7-bit is
   * re-encoded (quoted-printable or base64) into out_fd. Since version 2. */
  gboolean (*to_7bit) (int in_fd, int out_fd, GError **error);
} RmMimeModule;

/* The table of src/mime-gmime.c, in the module (and in the programs that
 * link that file directly: unit tests, fuzz targets). */
extern const RmMimeModule rampmail_mime_module;

/* Makes mime.c use module instead of loading one: for programs that link
 * src/mime-gmime.c themselves. NULL goes back to loading. */
void rm_mime_use_module (const RmMimeModule *module);

/* Checks a table found at path: RM_ERROR_UNAVAILABLE naming path unless
 * its version and size are this build's and every slot is set. */
gboolean rm_mime_check_module (const RmMimeModule *module, const char *path,
                               GError **error);

#endif
