/* Unit tests for message intake (src/intake.c) and the MIME helpers. */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "errors.h"
#include "intake.h"
#include "mime.h"
#include "mime-module.h"

typedef struct {
  char *out;
  RmIntakeResult result;
  gboolean ok;
  GError *error;
} Run;

static int
temp_fd_with (const char *data, gsize len)
{
  g_autofree char *path = NULL;
  int fd = g_file_open_tmp ("rm-intake-XXXXXX", &path, NULL);

  g_assert_cmpint (fd, >=, 0);
  unlink (path);
  g_assert_cmpint (write (fd, data, len), ==, (gssize) len);
  lseek (fd, 0, SEEK_SET);
  return fd;
}

static char *
read_all (int fd)
{
  GString *s = g_string_new (NULL);
  char buf[4096];
  ssize_t n;

  lseek (fd, 0, SEEK_SET);
  while ((n = read (fd, buf, sizeof buf)) > 0)
    g_string_append_len (s, buf, n);
  return g_string_free (s, FALSE);
}

/* The domain run_intake qualifies bare names with (NULL: none). */
static const char *intake_domain;

static void
run_intake (Run *run, const char *input, gsize len, gboolean ignore_dots)
{
  g_autoptr (GDateTime) now = g_date_time_new_utc (2026, 3, 4, 9, 5, 7);
  RmIntakeParams params = { .ignore_dots = ignore_dots,
                            .default_from = "Default <d@example.test>",
                            .message_id = "<id@example.test>",
                            .domain = intake_domain,
                            .now = now };
  int in = temp_fd_with (input, len);
  int out = temp_fd_with ("", 0);

  memset (run, 0, sizeof *run);
  run->ok = rm_intake_stream (in, out, &params, &run->result, &run->error);
  run->out = read_all (out);
  close (in);
  close (out);
}

static void
run_clear (Run *run)
{
  g_free (run->out);
  rm_intake_result_clear (&run->result);
  g_clear_error (&run->error);
}

#define ADDED                                                                \
  "From: Default <d@example.test>\r\n"                                       \
  "Date: Wed, 04 Mar 2026 09:05:07 +0000\r\n"                                \
  "Message-ID: <id@example.test>\r\n"

static void
test_line_endings (void)
{
  Run run;
  const char *in = "Subject: x\r\n\nlf\ncrlf\r\nbare\rcr\r\rlast";

  run_intake (&run, in, strlen (in), TRUE);
  g_assert_true (run.ok);
  g_assert_cmpstr (run.out, ==,
                   "Subject: x\r\n" ADDED "\r\nlf\r\ncrlf\r\nbare\r\ncr\r\n"
                   "\r\nlast\r\n");
  run_clear (&run);
}

static void
test_nul_removed (void)
{
  Run run;
  const char in[] = "Subject: x\n\na\0b\n";

  run_intake (&run, in, sizeof in - 1, TRUE);
  g_assert_true (run.ok);
  g_assert_cmpuint (run.result.nul_removed, ==, 1);
  g_assert_nonnull (strstr (run.out, "\r\n\r\nab\r\n"));
  run_clear (&run);
}

static void
test_lone_dot (void)
{
  Run run;
  const char *in = "Subject: x\n\nbefore\n.\nafter\n";

  run_intake (&run, in, strlen (in), FALSE);
  g_assert_true (run.ok);
  g_assert_true (g_str_has_suffix (run.out, "\r\n\r\nbefore\r\n"));
  run_clear (&run);

  run_intake (&run, in, strlen (in), TRUE);
  g_assert_true (g_str_has_suffix (run.out, "before\r\n.\r\nafter\r\n"));
  run_clear (&run);
}

static void
test_mbox_from (void)
{
  Run run;
  const char *in = "From abc Mon Sep 17 00:00:00 2001\nSubject: p\n\n"
                   "From here on\n";

  run_intake (&run, in, strlen (in), TRUE);
  g_assert_true (g_str_has_prefix (run.out, "Subject: p\r\n"));
  g_assert_true (g_str_has_suffix (run.out, "\r\n\r\nFrom here on\r\n"));
  run_clear (&run);
}

static void
test_body_only (void)
{
  Run run;
  const char *body = "plain text: a space makes it no field\n  indented\n";

  run_intake (&run, body, strlen (body), TRUE);
  g_assert_cmpstr (run.out, ==,
                   ADDED "\r\nplain text: a space makes it "
                         "no field\r\n  indented\r\n");
  run_clear (&run);
}

static void
test_headers_only (void)
{
  Run run;
  const char *in = "Subject: beat\nX-Beat: 1";

  run_intake (&run, in, strlen (in), TRUE);
  g_assert_cmpstr (run.out, ==,
                   "Subject: beat\r\nX-Beat: 1\r\n" ADDED "\r\n");
  run_clear (&run);
}

static void
test_recipients_and_bcc (void)
{
  Run run;
  const char *in = "To: a@example.org\nCc: b@example.org,\n c@example.org\n"
                   "Bcc: secret@example.org\nResent-Bcc: r@example.org\n"
                   "To: d@example.org\n\nbody\n";

  run_intake (&run, in, strlen (in), TRUE);
  g_assert_true (run.ok);
  g_assert_cmpuint (run.result.to->len, ==, 4);
  g_assert_cmpstr (run.result.to->pdata[1], ==,
                   "b@example.org, c@example.org");
  g_assert_cmpstr (run.result.to->pdata[2], ==, "secret@example.org");
  g_assert_cmpuint (run.result.resent->len, ==, 1);
  g_assert_null (strstr (run.out, "secret"));
  g_assert_null (strstr (run.out, "r@example.org"));
  /* the repeated To is merged into the first */
  g_assert_nonnull (strstr (run.out, "To: a@example.org,\r\n d@example.org"));
  run_clear (&run);
}

static void
test_existing_headers_kept (void)
{
  Run run;
  const char *in = "From: x <x@example.org>\nDate: Sat, 7 Mar 2026 23:59:59 "
                   "-0800 (PST)\nMessage-ID: <odd$id@h>\nSubject:  two  "
                   "spaces\n\n";

  run_intake (&run, in, strlen (in), TRUE);
  g_assert_null (strstr (run.out, "Default"));
  g_assert_null (strstr (run.out, "<id@example.test>"));
  g_assert_nonnull (strstr (run.out, "Subject:  two  spaces\r\n"));
  run_clear (&run);
}

static void
test_long_lines (void)
{
  g_autoptr (GString) in = g_string_new ("To: ");
  Run run;

  for (int i = 0; i < 80; i++)
    g_string_append_printf (in, "user%02d@example.org, ", i);
  g_string_append (in, "last@example.org\nSubject: s\n\n");
  for (int i = 0; i < 1200; i++)
    g_string_append_c (in, 'x');
  g_string_append_c (in, '\n');

  run_intake (&run, in->str, in->len, TRUE);
  g_assert_true (run.ok);
  g_assert_true (run.result.long_lines);
  g_assert_cmpuint (run.result.fields_folded, ==, 1);
  {
    g_auto (GStrv) lines = g_strsplit (run.out, "\r\n", -1);

    /* header lines are folded to <= 78; the body line is left alone */
    for (int i = 0; lines[i] && *lines[i]; i++)
      g_assert_cmpuint (strlen (lines[i]), <=, 78);
  }
  run_clear (&run);
}

static void
test_eight_bit (void)
{
  Run run;
  const char *in = "Subject: Pr\xc3\xbc"
                   "fbericht M\xc3\xa4rz\n\n"
                   "Gr\xc3\xbc\xc3\x9f"
                   "e\n";

  run_intake (&run, in, strlen (in), TRUE);
  g_assert_true (run.result.eight_bit);
  g_assert_cmpuint (run.result.fields_encoded, ==, 1);
  g_assert_true (g_str_has_prefix (run.out, "Subject: =?"));
  {
    g_autofree char *head = g_strndup (run.out, strstr (run.out, "\r\n\r\n")
                                                    - run.out);

    for (const char *p = head; *p; p++)
      g_assert_cmpint ((unsigned char) *p, <, 128);
  }
  run_clear (&run);
}

static void
test_header_too_large (void)
{
  g_autoptr (GString) in = g_string_new ("X-Big: a\n");
  Run run;

  while (in->len < RM_INTAKE_MAX_HEADER + 100)
    g_string_append (in, " more text more text more text more text\n");
  run_intake (&run, in->str, in->len, TRUE);
  g_assert_false (run.ok);
  g_assert_error (run.error, RM_ERROR, RM_ERROR_DATA);
  run_clear (&run);
}

static void
test_format_date (void)
{
  g_autoptr (GTimeZone) tz = g_time_zone_new_identifier ("+01:00");
  g_autoptr (GDateTime) when = g_date_time_new (tz, 2026, 12, 4, 8, 3, 9);
  g_autofree char *text = rm_intake_format_date (when);

  g_assert_cmpstr (text, ==, "Fri, 04 Dec 2026 08:03:09 +0100");
}

static void
test_fold (void)
{
  g_autofree char *short_field = rm_intake_fold ("Subject: hello");
  g_autofree char *unbreakable = NULL;
  g_autoptr (GString) word = g_string_new ("X: ");

  g_assert_cmpstr (short_field, ==, "Subject: hello");
  for (int i = 0; i < 100; i++)
    g_string_append_c (word, 'w');
  unbreakable = rm_intake_fold (word->str);
  g_assert_cmpstr (unbreakable, ==, word->str);
}

static void
test_mime_limit_lines (void)
{
  g_autoptr (GString) in = g_string_new ("Subject: s\r\nContent-Type: "
                                         "text/plain\r\n\r\nstart\r\n");
  g_autoptr (GError) error = NULL;
  g_autofree char *out = NULL;
  int in_fd, out_fd;

  for (int i = 0; i < 3000; i++)
    g_string_append_c (in, "abc=def "[i % 8]);
  g_string_append (in, "\r\nend\r\n");
  in_fd = temp_fd_with (in->str, in->len);
  out_fd = temp_fd_with ("", 0);
  g_assert_true (rm_mime_limit_lines (in_fd, out_fd, &error));
  g_assert_no_error (error);
  out = read_all (out_fd);
  g_assert_nonnull (strstr (out, "quoted-printable"));
  {
    g_auto (GStrv) lines = g_strsplit (out, "\r\n", -1);

    for (int i = 0; lines[i]; i++)
      {
        g_assert_cmpuint (strlen (lines[i]), <=, 998);
        g_assert_null (strchr (lines[i], '\n'));
      }
  }
  close (in_fd);
  close (out_fd);
}

static void
test_mime_encode_field (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *subject = rm_mime_encode_field ("Subject",
                                                   "Gr\xc3\xbc\xc3\x9f"
                                                   "e aus K\xc3\xb6ln",
                                                   &error);
  g_autofree char *latin1 = rm_mime_encode_field ("Subject", "caf\xe9",
                                                  &error);
  g_autofree char *from = rm_mime_encode_field (
      "From", "Zo\xc3\xab H <z@example.com>", &error);

  g_assert_no_error (error);

  g_assert_true (g_str_has_prefix (subject, "Subject: =?"));
  g_assert_true (g_str_has_prefix (latin1, "Subject: =?"));
  g_assert_nonnull (strstr (from, "<z@example.com>"));
  for (const char *p = from; *p; p++)
    g_assert_cmpint ((unsigned char) *p, <, 128);
}

/* Bare local names in address fields get the domain (cron's "From:
 * root"), other fields and qualified addresses are kept, and nothing
 * changes under a DKIM signature. */
static void
test_qualify (void)
{
  Run run;
  const char *in = "From: root (Cron Daemon)\n"
                   "To: ops, Admin <admin>,\n  other@example.org\n"
                   "Reply-To: <>\n"
                   "Subject: root\n"
                   "X-Note: root\n\nbody\n";
  const char *signed_in = "DKIM-Signature: v=1; a=rsa-sha256; d=x\n"
                          "From: root\n\nbody\n";

  intake_domain = "example.test";
  run_intake (&run, in, strlen (in), TRUE);
  g_assert_true (run.ok);
  g_assert_nonnull (
      strstr (run.out, "From: root@example.test (Cron Daemon)\r\n"));
  g_assert_nonnull (strstr (run.out, "To: ops@example.test, Admin "
                                     "<admin@example.test>,  "
                                     "other@example.org\r\n"));
  g_assert_nonnull (strstr (run.out, "Reply-To: <>\r\n"));
  g_assert_nonnull (strstr (run.out, "Subject: root\r\n"));
  g_assert_nonnull (strstr (run.out, "X-Note: root\r\n"));
  g_assert_cmpuint (run.result.fields_qualified, ==, 2);
  g_assert_cmpstr (run.result.from, ==, "root@example.test (Cron Daemon)");
  run_clear (&run);

  run_intake (&run, signed_in, strlen (signed_in), TRUE);
  g_assert_true (run.ok);
  g_assert_nonnull (strstr (run.out, "\r\nFrom: root\r\n"));
  g_assert_cmpuint (run.result.fields_qualified, ==, 0);
  run_clear (&run);
  intake_domain = NULL;
}

/* A module of another interface version, or with an empty slot, is
 * refused with its path. */
static void
test_mime_stale_module (void)
{
  RmMimeModule stale = rampmail_mime_module;
  g_autoptr (GError) error = NULL;

  g_assert_true (rm_mime_check_module (&rampmail_mime_module, "/m", NULL));
  stale.version = RM_MIME_MODULE_VERSION + 1;
  g_assert_false (rm_mime_check_module (&stale, "/old/mime.so", &error));
  g_assert_error (error, RM_ERROR, RM_ERROR_UNAVAILABLE);
  g_assert_nonnull (strstr (error->message, "/old/mime.so"));
  g_assert_nonnull (strstr (error->message, "interface version"));
  g_clear_error (&error);
  stale = rampmail_mime_module;
  stale.limit_lines = NULL;
  g_assert_false (rm_mime_check_module (&stale, "/old/mime.so", &error));
  g_assert_error (error, RM_ERROR, RM_ERROR_UNAVAILABLE);
}

/* Without a module in the directory: RM_ERROR_UNAVAILABLE naming the
 * path, and intake fails rather than writing the field as it was. */
static void
test_mime_module_missing (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("rm-no-mime-XXXXXX", NULL);
  const char *in;
  Run run;

  g_assert_nonnull (dir);
  rm_mime_use_module (NULL);
  rm_mime_set_module_dir (dir);
  g_assert_null (rm_mime_encode_field ("Subject", "caf\xc3\xa9", &error));
  g_assert_error (error, RM_ERROR, RM_ERROR_UNAVAILABLE);
  g_assert_nonnull (strstr (error->message, dir));
  g_assert_nonnull (strstr (error->message, "MIME module"));
  g_clear_error (&error);
  g_assert_false (rm_mime_limit_lines (0, 1, &error));
  g_assert_error (error, RM_ERROR, RM_ERROR_UNAVAILABLE);

  in = "Subject: caf\xc3\xa9\r\n\r\nbody\r\n";
  run_intake (&run, in, strlen (in), FALSE);
  g_assert_false (run.ok);
  g_assert_error (run.error, RM_ERROR, RM_ERROR_UNAVAILABLE);
  g_assert_null (strstr (run.out, "caf"));
  run_clear (&run);
  /* ASCII needs no module. */
  in = "Subject: cafe\r\n\r\nbody\r\n";
  run_intake (&run, in, strlen (in), FALSE);
  g_assert_true (run.ok);
  run_clear (&run);

  rmdir (dir);
  rm_mime_use_module (&rampmail_mime_module);
}

/* The module built beside this test (make check sets
 * RAMPMAIL_PLUGIN_BUILD_DIR) loads and encodes like the linked code. */
static void
test_mime_module_built (void)
{
  const char *dir = g_getenv ("RAMPMAIL_PLUGIN_BUILD_DIR");
  g_autoptr (GError) error = NULL;
  g_autofree char *linked = NULL;
  g_autofree char *loaded = NULL;

  if (dir == NULL)
    {
      g_test_skip ("RAMPMAIL_PLUGIN_BUILD_DIR is not set");
      return;
    }
  linked = rm_mime_encode_field ("Subject", "caf\xc3\xa9", &error);
  g_assert_no_error (error);
  rm_mime_use_module (NULL);
  rm_mime_set_module_dir (dir);
  loaded = rm_mime_encode_field ("Subject", "caf\xc3\xa9", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (loaded, ==, linked);
  rm_mime_use_module (&rampmail_mime_module);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* The GMime half of mime.h is linked into this test (Makefile.am). */
  rm_mime_use_module (&rampmail_mime_module);
  g_test_add_func ("/intake/line-endings", test_line_endings);
  g_test_add_func ("/intake/nul-removed", test_nul_removed);
  g_test_add_func ("/intake/lone-dot", test_lone_dot);
  g_test_add_func ("/intake/mbox-from", test_mbox_from);
  g_test_add_func ("/intake/body-only", test_body_only);
  g_test_add_func ("/intake/headers-only", test_headers_only);
  g_test_add_func ("/intake/recipients-and-bcc", test_recipients_and_bcc);
  g_test_add_func ("/intake/existing-headers-kept",
                   test_existing_headers_kept);
  g_test_add_func ("/intake/long-lines", test_long_lines);
  g_test_add_func ("/intake/eight-bit", test_eight_bit);
  g_test_add_func ("/intake/header-too-large", test_header_too_large);
  g_test_add_func ("/intake/format-date", test_format_date);
  g_test_add_func ("/intake/fold", test_fold);
  g_test_add_func ("/intake/qualify", test_qualify);
  g_test_add_func ("/mime/limit-lines", test_mime_limit_lines);
  g_test_add_func ("/mime/encode-field", test_mime_encode_field);
  g_test_add_func ("/mime/stale-module", test_mime_stale_module);
  g_test_add_func ("/mime/module-missing", test_mime_module_missing);
  g_test_add_func ("/mime/module-built", test_mime_module_built);
  return g_test_run ();
}
