/* libFuzzer target: the address parser (src/address.c).
 * Built and run by fuzz/run.sh; seeds in fuzz/corpus/address/.
 *
 * Every entry point gets the input; whatever comes back must be a mailbox
 * that can go into RCPT TO:<...> unchanged, and every error an
 * RM_ERROR_DATA with a one-line message.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "address.h"
#include "errors.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define CHECK(cond) ((cond) ? (void) 0 : abort ())

static int
is_atext (unsigned char c)
{
  return c >= 0x80 || g_ascii_isalnum (c)
         || (c != '\0' && strchr ("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static void
check_mailbox (const char *m)
{
  const char *p;

  CHECK (g_utf8_validate (m, -1, NULL));
  for (p = m; *p != '\0'; p++)
    CHECK ((unsigned char) *p >= 0x20 && *p != 0x7f);

  p = m;
  if (*p == '"')
    {
      for (p++; *p != '"'; p++)
        {
          CHECK (*p != '\0' && *p != '\t');
          if (*p == '\\')
            {
              p++;
              CHECK (*p != '\0');
            }
        }
      p++;
      CHECK (p - m > 2);
    }
  else
    {
      const char *start = p;

      for (; *p != '\0' && *p != '@'; p++)
        CHECK (is_atext ((unsigned char) *p) || *p == '.');
      CHECK (p > start && *start != '.' && p[-1] != '.');
      CHECK (g_strstr_len (start, p - start, "..") == NULL);
    }
  if (*p == '\0')
    return;
  CHECK (*p == '@');
  p++;
  if (*p == '[')
    {
      for (p++; *p != ']'; p++)
        CHECK (*p > ' ' && *p < 0x7f && *p != '[' && *p != '\\');
      CHECK (p[1] == '\0');
      return;
    }
  CHECK (*p != '\0' && *p != '.' && strstr (p, "..") == NULL);
  for (; *p != '\0'; p++)
    CHECK (g_ascii_isalnum (*p) || *p == '-' || *p == '.'
           || (unsigned char) *p >= 0x80);
  CHECK (p[-1] != '.');
}

static void
check_error (GError *error)
{
  CHECK (error != NULL && error->domain == RM_ERROR
         && error->code == RM_ERROR_DATA);
  CHECK (strchr (error->message, '\n') == NULL);
  CHECK (strchr (error->message, '\r') == NULL);
  g_error_free (error);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *text = g_strndup ((const char *) data, size);
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  GError *error = NULL;
  char *one;
  guint i;

  if (!rm_address_parse_list (text, out, &error))
    check_error (error);
  error = NULL;
  for (i = 0; i < out->len; i++)
    check_mailbox (g_ptr_array_index (out, i));
  g_ptr_array_set_size (out, 0);

  if (!rm_address_parse_arg_list (text, out, &error))
    check_error (error);
  error = NULL;
  for (i = 0; i < out->len; i++)
    check_mailbox (g_ptr_array_index (out, i));

  one = rm_address_parse_arg (text, &error);
  if (one == NULL)
    check_error (error);
  else
    {
      check_mailbox (one);
      for (i = 0; text[i] != '\0'; i++)
        CHECK ((unsigned char) text[i] >= 0x20 && text[i] != 0x7f);
      CHECK (rm_address_equal (one, one));
      g_free (one);
    }
  error = NULL;

  one = rm_address_parse_sender (text, &error);
  if (one == NULL)
    check_error (error);
  else if (*one != '\0')
    check_mailbox (one);
  g_free (one);

  /* Qualifying is idempotent: what it gives has nothing left to qualify. */
  one = rm_address_qualify_list (text, "example.com");
  if (one != NULL)
    {
      char *again = rm_address_qualify_list (one, "example.com");

      CHECK (again == NULL);
      CHECK (strlen (one) > strlen (text));
      g_free (again);
      g_free (one);
    }

  (void) rm_address_has_domain (text);
  (void) rm_address_is_ascii (text);
  (void) rm_address_equal (text, "a@example.com");

  g_ptr_array_unref (out);
  g_free (text);
  return 0;
}
