/* libFuzzer target: message intake (src/intake.c), the header parser.
 * Built and run by fuzz/run.sh; seeds in fuzz/corpus/intake/.
 *
 * The GMime half of mime.h (src/mime-gmime.c) is linked in and used
 * directly, without the module.
 *
 * The input is a message on standard input. It goes through
 * rm_intake_stream() twice, with and without ignore_dots, from one memfd to
 * another; the output must be in wire form (CRLF line ends, no NUL, as
 * many octets as reported) and the collected To/Cc/Bcc and Resent-*
 * values go through rm_address_parse_list().
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <glib.h>

#include "address.h"
#include "errors.h"
#include "intake.h"
#include "mime-module.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define CHECK(cond) ((cond) ? (void) 0 : abort ())

static void
write_all (int fd, const uint8_t *data, size_t size)
{
  while (size > 0)
    {
      ssize_t n = write (fd, data, size);

      CHECK (n > 0);
      data += n;
      size -= (size_t) n;
    }
}

static void
check_output (int fd, const RmIntakeResult *result)
{
  off_t len = lseek (fd, 0, SEEK_END);
  char *buf;
  off_t i;

  CHECK (len == result->size);
  if (len == 0)
    return;
  buf = g_malloc ((gsize) len);
  CHECK (pread (fd, buf, (size_t) len, 0) == len);
  for (i = 0; i < len; i++)
    {
      CHECK (buf[i] != '\0');
      if (buf[i] == '\r')
        CHECK (i + 1 < len && buf[i + 1] == '\n');
      if (buf[i] == '\n')
        CHECK (i > 0 && buf[i - 1] == '\r');
    }
  CHECK (buf[len - 1] == '\n');
  g_free (buf);
}

static void
parse_values (GPtrArray *values)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  guint i;

  for (i = 0; i < values->len; i++)
    {
      GError *error = NULL;

      if (!rm_address_parse_list (g_ptr_array_index (values, i), out, &error))
        {
          CHECK (error != NULL && error->domain == RM_ERROR);
          g_error_free (error);
        }
    }
  g_ptr_array_unref (out);
}

static void
run_once (const uint8_t *data, size_t size, gboolean ignore_dots,
          GDateTime *now)
{
  RmIntakeParams params = { 0 };
  RmIntakeResult result;
  GError *error = NULL;
  int in_fd = memfd_create ("fuzz-in", 0);
  int out_fd = memfd_create ("fuzz-out", 0);

  CHECK (in_fd >= 0 && out_fd >= 0);
  write_all (in_fd, data, size);
  CHECK (lseek (in_fd, 0, SEEK_SET) == 0);

  params.ignore_dots = ignore_dots;
  params.default_from = "Fuzz <fuzz@example.org>";
  params.message_id = "<fuzz.1@example.org>";
  params.domain = "example.org";
  params.now = now;
  if (rm_intake_stream (in_fd, out_fd, &params, &result, &error))
    {
      check_output (out_fd, &result);
      if (result.to != NULL)
        parse_values (result.to);
      if (result.resent != NULL)
        parse_values (result.resent);
    }
  else
    {
      CHECK (error != NULL && error->domain == RM_ERROR
             && error->code != RM_ERROR_UNAVAILABLE);
      g_error_free (error);
    }
  rm_intake_result_clear (&result);
  close (in_fd);
  close (out_fd);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static GDateTime *now;

  if (now == NULL)
    {
      now = g_date_time_new_utc (2026, 12, 4, 18, 30, 0);
      /* The GMime half of mime.h is linked in (fuzz/run.sh), not loaded. */
      rm_mime_use_module (&rampmail_mime_module);
    }
  run_once (data, size, FALSE, now);
  run_once (data, size, TRUE, now);
  return 0;
}
