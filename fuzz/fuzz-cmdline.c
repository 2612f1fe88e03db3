/* libFuzzer target: the sendmail command line (src/cmdline.c).
 * Built and run by fuzz/run.sh; seeds in fuzz/corpus/cmdline/.
 *
 * The input is split on NUL into arguments, which follow argv[0] =
 * "sendmail", "mailq" and "newaliases" in turn. A -q interval and the
 * recipients are parsed further, as main.c would.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "address.h"
#include "cmdline.h"
#include "errors.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define CHECK(cond) ((cond) ? (void) 0 : abort ())

static void
parse_once (const char *name, const uint8_t *data, size_t size)
{
  GPtrArray *args = g_ptr_array_new_with_free_func (g_free);
  RmOptions opts;
  GError *error = NULL;
  char **argv;
  size_t start = 0, i;
  guint n;

  g_ptr_array_add (args, g_strdup (name));
  for (i = 0; i <= size; i++)
    if (i == size || data[i] == '\0')
      {
        if (i < size || i > start)
          g_ptr_array_add (
              args, g_strndup ((const char *) data + start, i - start));
        start = i + 1;
      }

  /* rm_cmdline_parse may reorder argv, as getopt does: pass a copy. */
  n = args->len;
  argv = g_new0 (char *, n + 1);
  memcpy (argv, args->pdata, n * sizeof (char *));

  memset (&opts, 0, sizeof opts);
  if (rm_cmdline_parse ((int) n, argv, &opts, &error))
    {
      if (opts.queue_interval != NULL)
        {
          GError *e = NULL;

          if (rm_cmdline_interval_seconds (opts.queue_interval, &e) == 0)
            {
              CHECK (e != NULL);
              g_error_free (e);
            }
        }
      if (opts.mode == RM_MODE_SEND && opts.recipients != NULL)
        {
          GPtrArray *out = g_ptr_array_new_with_free_func (g_free);

          for (i = 0; i < opts.recipients->len; i++)
            {
              GError *e = NULL;

              if (!rm_address_parse_arg_list (
                      g_ptr_array_index (opts.recipients, i), out, &e))
                g_error_free (e);
            }
          g_ptr_array_unref (out);
        }
      if (opts.sender != NULL)
        {
          GError *e = NULL;
          char *s = rm_address_parse_sender (opts.sender, &e);

          if (s == NULL)
            g_error_free (e);
          g_free (s);
        }
    }
  else
    {
      CHECK (error != NULL && error->domain == RM_ERROR);
      g_error_free (error);
    }
  rm_options_clear (&opts);
  g_free (argv);
  g_ptr_array_unref (args);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  parse_once ("sendmail", data, size);
  parse_once ("mailq", data, size);
  parse_once ("newaliases", data, size);
  return 0;
}
