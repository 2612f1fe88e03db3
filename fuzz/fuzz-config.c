/* libFuzzer target: the configuration file (src/conf.c).
 * Built and run by fuzz/run.sh; seeds in fuzz/corpus/config/.
 *
 * The input is written to a file in a private temporary folder and loaded
 * with rm_config_load(); a failure must be one RM_ERROR_CONFIG.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "conf.h"
#include "errors.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define CHECK(cond) ((cond) ? (void) 0 : abort ())

static char *dir;
static char *path;

static void
remove_dir (void)
{
  if (path != NULL)
    unlink (path);
  if (dir != NULL)
    rmdir (dir);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  RmConfig *config;

  if (dir == NULL)
    {
      dir = g_dir_make_tmp ("rampmail-fuzz-config.XXXXXX", NULL);
      CHECK (dir != NULL);
      path = g_build_filename (dir, "rampmail.conf", NULL);
      atexit (remove_dir);
    }
  CHECK (
      g_file_set_contents (path, (const char *) data, (gssize) size, NULL));
  config = rm_config_load (path, &error);
  if (config != NULL)
    {
      CHECK (error == NULL);
      CHECK (config->servers != NULL && config->servers->len >= 1);
      rm_config_free (config);
    }
  else
    {
      CHECK (error != NULL && error->domain == RM_ERROR
             && error->code == RM_ERROR_CONFIG);
      g_error_free (error);
    }
  return 0;
}
