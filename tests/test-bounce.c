/* Unit tests for bounces (src/bounce.c): what is queued, and that the DSN
 * keeps the spool format and parses as multipart/report. */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <gmime/gmime.h>

#include "bounce.h"
#include "errors.h"
#include "queue.h"

#define ORIGINAL_ID "000600000000000012ABCD"
#define ORIGINAL                                                             \
  "From: Alice <alice@example.org>\r\n"                                      \
  "To: bob@example.net\r\n"                                                  \
  "Subject: hello\r\n"                                                       \
  "Message-ID: <m1@example.org>\r\n"                                         \
  "\r\n"                                                                     \
  "Body line that must not be returned.\r\n"

typedef struct {
  char *dir;
  RmQueue *queue;
  RmConfig config;
  RmEntry *entry;
  int data_fd;
} Fixture;

static int
data_file (const char *dir, const char *text, gsize len)
{
  g_autofree char *path = g_build_filename (dir, "original", NULL);
  int fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (write (fd, text, len), ==, (gssize) len);
  return fd;
}

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *qdir = NULL;

  (void) data;
  f->dir = g_dir_make_tmp ("rm-bounce-XXXXXX", &error);
  g_assert_no_error (error);
  qdir = g_build_filename (f->dir, "queue", NULL);
  f->queue = rm_queue_open (qdir, &error);
  g_assert_no_error (error);
  memset (&f->config, 0, sizeof f->config);
  f->config.hostname = (char *) "relay.example.org";
  f->config.domain = (char *) "example.org";
  f->entry = rm_entry_new ();
  f->entry->id = g_strdup (ORIGINAL_ID);
  f->entry->sender = g_strdup ("alice@example.org");
  g_ptr_array_add (f->entry->rcpts, g_strdup ("bob@example.net"));
  g_ptr_array_add (f->entry->rcpts, g_strdup ("carol@example.net"));
  g_ptr_array_add (f->entry->rcpts, g_strdup ("dave@example.net"));
  f->entry->created = 1764860000;
  f->entry->attempts = 1;
  f->data_fd = data_file (f->dir, ORIGINAL, strlen (ORIGINAL));
}

static void
remove_tree (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir == NULL)
    {
      g_unlink (path);
      return;
    }
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);

      remove_tree (child);
    }
  g_dir_close (dir);
  g_rmdir (path);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  (void) data;
  close (f->data_fd);
  rm_entry_free (f->entry);
  rm_queue_free (f->queue);
  if (g_getenv ("KEEP_TEST_DIR") == NULL)
    remove_tree (f->dir);
  else
    g_test_message ("kept %s", f->dir);
  g_free (f->dir);
}

static char *
queue_bounce (Fixture *f, const RmBounceRcpt *rcpts, gsize n,
              RmBounceReason reason, guint serial)
{
  g_autoptr (GError) error = NULL;
  char *id = (char *) "unset";

  g_assert_true (rm_bounce_queue (f->queue, &f->config, f->entry, f->data_fd,
                                  rcpts, n, reason, serial, &id, &error));
  g_assert_no_error (error);
  return id;
}

static char *
bounce_path (Fixture *f, const char *id)
{
  return g_build_filename (rm_queue_dir (f->queue), "data", id, NULL);
}

static char *
bounce_text (Fixture *f, const char *id)
{
  g_autofree char *path = bounce_path (f, id);
  g_autoptr (GError) error = NULL;
  char *text = NULL;

  g_file_get_contents (path, &text, NULL, &error);
  g_assert_no_error (error);
  return text;
}

/* Every line ends with CRLF, none is over 998 octets, all is 7-bit. */
static void
assert_wire_form (const char *text)
{
  gsize line = 0;
  gsize len = strlen (text);

  g_assert_cmpuint (len, >, 0);
  g_assert_true (g_str_has_suffix (text, "\r\n"));
  for (gsize i = 0; i < len; i++)
    {
      guchar c = (guchar) text[i];

      g_assert_cmpuint (c, <, 0x80);
      if (c == '\r')
        g_assert_cmpint (text[i + 1], ==, '\n');
      if (c == '\n')
        {
          g_assert_cmpuint (i, >, 0);
          g_assert_cmpint (text[i - 1], ==, '\r');
          g_assert_cmpuint (i - 1 - line, <=, 998);
          line = i + 1;
        }
      else if (c != '\r')
        g_assert_true (c == '\t' || (c >= 0x20 && c < 0x7f));
    }
}

typedef struct {
  char *parts[3]; /* each part as written: its header, a blank line and
                    * its content */
  char *subject;
} Parsed;

static void
parsed_clear (Parsed *p)
{
  for (int i = 0; i < 3; i++)
    g_free (p->parts[i]);
  g_free (p->subject);
}

/* Parses the bounce with GMime: a multipart/report of three parts. */
static void
parse_bounce (Fixture *f, const char *id, Parsed *out)
{
  static const char *const types[][2] = {
    { "text", "plain" },
    { "message", "delivery-status" },
    { "text", "rfc822-headers" },
  };
  g_autofree char *path = bounce_path (f, id);
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  GMimeStream *stream;
  GMimeParser *parser;
  GMimeMessage *msg;
  GMimeObject *body;
  GMimeContentType *ct;
  GMimeFormatOptions *crlf = g_mime_format_options_new ();

  g_mime_format_options_set_newline_format (crlf, GMIME_NEWLINE_FORMAT_DOS);
  g_assert_cmpint (fd, >=, 0);
  stream = g_mime_stream_fs_new (fd);
  parser = g_mime_parser_new_with_stream (stream);
  msg = g_mime_parser_construct_message (parser, NULL);
  g_assert_nonnull (msg);
  body = g_mime_message_get_mime_part (msg);
  g_assert_true (GMIME_IS_MULTIPART (body));
  ct = g_mime_object_get_content_type (body);
  g_assert_true (g_mime_content_type_is_type (ct, "multipart", "report"));
  g_assert_cmpstr (g_mime_content_type_get_parameter (ct, "report-type"), ==,
                   "delivery-status");
  g_assert_cmpint (g_mime_multipart_get_count (GMIME_MULTIPART (body)), ==,
                   3);
  for (int i = 0; i < 3; i++)
    {
      GMimeObject *part = g_mime_multipart_get_part (GMIME_MULTIPART (body),
                                                     i);

      ct = g_mime_object_get_content_type (part);
      g_assert_true (
          g_mime_content_type_is_type (ct, types[i][0], types[i][1]));
      out->parts[i] = g_mime_object_to_string (part, crlf);
    }
  out->subject = g_strdup (g_mime_message_get_subject (msg));
  g_mime_format_options_free (crlf);
  g_object_unref (msg);
  g_object_unref (parser);
  g_object_unref (stream);
}

static const RmBounceRcpt refused[] = {
  { "bob@example.net", "550 5.1.1 <bob@example.net>: no such user", "primary",
    "mx1.example.net" },
  { "dave@example.net", "554 relay access denied", NULL, NULL },
};

static void
test_queued (Fixture *f, gconstpointer data)
{
  g_autofree char *id = NULL;
  g_autoptr (RmEntry) bounce = NULL;
  g_autoptr (GPtrArray) ids = NULL;
  g_autoptr (GError) error = NULL;

  (void) data;
  id = queue_bounce (f, refused, G_N_ELEMENTS (refused), RM_BOUNCE_FAILED, 1);
  g_assert_cmpstr (id, ==, ORIGINAL_ID "-B1");
  g_assert_true (rm_queue_exists (f->queue, id));
  bounce = rm_queue_load (f->queue, id, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (bounce->sender, ==, "");
  g_assert_cmpuint (bounce->rcpts->len, ==, 1);
  g_assert_cmpstr (bounce->rcpts->pdata[0], ==, "alice@example.org");
  g_assert_cmpint (bounce->body, ==, RM_BODY_7BIT);
  ids = rm_queue_list (f->queue, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (ids->len, ==, 1);
}

static void
test_content (Fixture *f, gconstpointer data)
{
  g_autofree char *id = NULL;
  g_autofree char *text = NULL;
  Parsed p = { { NULL, NULL, NULL }, NULL };

  (void) data;
  id = queue_bounce (f, refused, G_N_ELEMENTS (refused), RM_BOUNCE_FAILED, 1);
  text = bounce_text (f, id);
  assert_wire_form (text);
  g_assert_true (g_str_has_prefix (text, "From: Mail Delivery System "
                                         "<MAILER-DAEMON@example.org>\r\n"));
  g_assert_nonnull (strstr (text, "\r\nTo: <alice@example.org>\r\n"));
  g_assert_nonnull (strstr (text, "\r\nMessage-ID: <" ORIGINAL_ID
                                  "-B1@relay.example.org>\r\n"));
  g_assert_nonnull (strstr (text, "\r\nAuto-Submitted: auto-replied\r\n"));
  g_assert_nonnull (strstr (text, "\r\nDate: "));
  parse_bounce (f, id, &p);
  g_assert_cmpstr (p.subject, ==, "Undelivered Mail Returned to Sender");

  /* Only the refused recipients, with their replies. */
  for (int i = 0; i < 2; i++)
    {
      g_assert_nonnull (strstr (p.parts[i], "bob@example.net"));
      g_assert_nonnull (strstr (p.parts[i], "dave@example.net"));
      g_assert_null (strstr (p.parts[i], "carol@example.net"));
    }
  g_assert_nonnull (strstr (p.parts[0], "no such user"));
  g_assert_nonnull (strstr (p.parts[0], "relay access denied"));

  g_assert_nonnull (strstr (p.parts[1], "Reporting-MTA: dns; "
                                        "relay.example.org\r\n"));
  g_assert_nonnull (
      strstr (p.parts[1], "X-Rampmail-Queue-ID: " ORIGINAL_ID "\r\n"));
  g_assert_nonnull (strstr (p.parts[1], "Arrival-Date: "));
  g_assert_nonnull (strstr (p.parts[1], "Final-Recipient: rfc822; "
                                        "bob@example.net\r\n"
                                        "Action: failed\r\n"
                                        "Status: 5.1.1\r\n"
                                        "Remote-MTA: dns; mx1.example.net\r\n"
                                        "Diagnostic-Code: smtp; 550 5.1.1 "));
  g_assert_nonnull (strstr (p.parts[1], "Final-Recipient: rfc822; "
                                        "dave@example.net\r\n"
                                        "Action: failed\r\n"
                                        "Status: 5.0.0\r\n"
                                        "Diagnostic-Code: smtp; 554 relay "
                                        "access denied\r\n"
                                        "Last-Attempt-Date: "));

  /* The header section of the original, not its body. */
  g_assert_nonnull (strstr (p.parts[2], "\r\nSubject: hello\r\n"));
  g_assert_nonnull (strstr (p.parts[2], "\r\nTo: bob@example.net\r\n"));
  g_assert_null (strstr (text, "must not be returned"));
  parsed_clear (&p);
}

static void
test_status_codes (Fixture *f, gconstpointer data)
{
  static const RmBounceRcpt rcpts[] = {
    { "a@example.net", "550-5.7.1 first line\r\n550 5.7.1 second", NULL,
      NULL },
    { "b@example.net", "553 5.1.10 bad address", NULL, NULL },
    { "c@example.net", "550 4.1.1 class disagrees", NULL, NULL },
    { "d@example.net", "550 5.1 too short", NULL, NULL },
    { "e@example.net", "not an smtp reply", NULL, NULL },
    { "f@example.net", "", NULL, NULL },
  };
  g_autofree char *id = NULL;
  Parsed p = { { NULL, NULL, NULL }, NULL };

  (void) data;
  id = queue_bounce (f, rcpts, G_N_ELEMENTS (rcpts), RM_BOUNCE_FAILED, 3);
  g_assert_cmpstr (id, ==, ORIGINAL_ID "-B3");
  parse_bounce (f, id, &p);
  g_assert_nonnull (strstr (p.parts[1], "a@example.net\r\nAction: failed\r\n"
                                        "Status: 5.7.1\r\n"));
  g_assert_nonnull (strstr (p.parts[1], "; 550-5.7.1 first line 550 5.7.1 "
                                        "second\r\n"));
  g_assert_nonnull (strstr (p.parts[1], "b@example.net\r\nAction: failed\r\n"
                                        "Status: 5.1.10\r\n"));
  g_assert_nonnull (strstr (p.parts[1], "c@example.net\r\nAction: failed\r\n"
                                        "Status: 5.0.0\r\n"));
  g_assert_nonnull (strstr (p.parts[1], "d@example.net\r\nAction: failed\r\n"
                                        "Status: 5.0.0\r\n"));
  g_assert_nonnull (strstr (p.parts[1], "e@example.net\r\nAction: failed\r\n"
                                        "Status: 5.0.0\r\n"
                                        "Diagnostic-Code: X-Rampmail; not an "
                                        "smtp reply\r\n"));
  g_assert_nonnull (strstr (p.parts[1], "f@example.net\r\nAction: failed\r\n"
                                        "Status: 5.0.0\r\n"));
  parsed_clear (&p);
}

static void
test_expired (Fixture *f, gconstpointer data)
{
  static const RmBounceRcpt rcpts[] = {
    { "bob@example.net", "451 4.3.0 try again later", "backup",
      "mx2.example.net" },
    { "carol@example.net", "connection refused", NULL, NULL },
  };
  g_autofree char *id = NULL;
  g_autofree char *text = NULL;
  Parsed p = { { NULL, NULL, NULL }, NULL };

  (void) data;
  f->entry->last_attempt = 1764900000;
  id = queue_bounce (f, rcpts, G_N_ELEMENTS (rcpts), RM_BOUNCE_EXPIRED, 7);
  text = bounce_text (f, id);
  assert_wire_form (text);
  parse_bounce (f, id, &p);
  g_assert_true (strstr (p.subject, "expired") != NULL);
  g_assert_nonnull (strstr (p.parts[1],
                            "bob@example.net\r\nAction: failed\r\n"
                            "Status: 4.4.7\r\n"
                            "Remote-MTA: dns; mx2.example.net\r\n"
                            "Diagnostic-Code: smtp; 451 4.3.0 "
                            "try again later\r\n"));
  g_assert_nonnull (strstr (p.parts[1], "carol@example.net\r\n"
                                        "Action: failed\r\n"
                                        "Status: 4.4.7\r\n"
                                        "Diagnostic-Code: X-Rampmail; "
                                        "connection refused\r\n"));
  g_assert_null (strstr (p.parts[1], "dave@example.net"));
  parsed_clear (&p);
}

static void
test_null_sender (Fixture *f, gconstpointer data)
{
  g_autofree char *id = NULL;
  g_autoptr (GPtrArray) ids = NULL;
  g_autoptr (GError) error = NULL;

  (void) data;
  g_free (f->entry->sender);
  f->entry->sender = g_strdup ("");
  id = queue_bounce (f, refused, G_N_ELEMENTS (refused), RM_BOUNCE_FAILED, 1);
  g_assert_null (id);
  ids = rm_queue_list (f->queue, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (ids->len, ==, 0);
  g_assert_false (rm_queue_exists (f->queue, ORIGINAL_ID "-B1"));
}

static void
test_once (Fixture *f, gconstpointer data)
{
  g_autofree char *first = NULL;
  g_autofree char *again = NULL;
  g_autofree char *next = NULL;
  g_autofree char *before = NULL;
  g_autofree char *after = NULL;
  g_autoptr (GPtrArray) ids = NULL;
  g_autoptr (GError) error = NULL;

  (void) data;
  first = queue_bounce (f, refused, 1, RM_BOUNCE_FAILED, 1);
  g_assert_nonnull (first);
  before = bounce_text (f, first);
  again = queue_bounce (f, refused, 2, RM_BOUNCE_FAILED, 1);
  g_assert_null (again);
  after = bounce_text (f, first);
  g_assert_cmpstr (before, ==, after);
  next = queue_bounce (f, refused, 1, RM_BOUNCE_FAILED, 2);
  g_assert_cmpstr (next, ==, ORIGINAL_ID "-B2");
  ids = rm_queue_list (f->queue, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (ids->len, ==, 2);
  /* Nothing left behind in tmp/. */
  {
    g_autofree char *tmp = g_build_filename (rm_queue_dir (f->queue), "tmp",
                                             NULL);
    GDir *dir = g_dir_open (tmp, 0, NULL);

    g_assert_nonnull (dir);
    g_assert_null (g_dir_read_name (dir));
    g_dir_close (dir);
  }
}

static char *
long_reply (gsize len, gboolean spaces)
{
  GString *s = g_string_new ("550 5.2.2 ");

  while (s->len < len)
    g_string_append_c (s,
                       spaces && s->len % 7 == 0 ? ' ' : 'a' + s->len % 26);
  return g_string_free (s, FALSE);
}

static void
test_hostile_replies (Fixture *f, gconstpointer data)
{
  g_autofree char *solid = long_reply (2000, FALSE);
  g_autofree char *spaced = long_reply (2000, TRUE);
  g_autofree char *huge = long_reply (20000, FALSE);
  g_autofree char *long_addr = g_strnfill (1200, 'x');
  const RmBounceRcpt rcpts[] = {
    { "bob@example.net",
      "550 5.1.1 bad\r\n\r.\r\nFrom: forged\nX\rY\x01\x1b[31m\x7f\xff\t"
      "\xc3\xa9 end",
      "srv\r\nInjected: 1", "host\nname" },
    { "carol@example.net", solid, NULL, NULL },
    { "dave@example.net", spaced, NULL, "mx.example.net" },
    { long_addr, huge, NULL, NULL },
  };
  g_autofree char *id = NULL;
  g_autofree char *text = NULL;
  Parsed p = { { NULL, NULL, NULL }, NULL };

  (void) data;
  id = queue_bounce (f, rcpts, G_N_ELEMENTS (rcpts), RM_BOUNCE_FAILED, 1);
  text = bounce_text (f, id);
  assert_wire_form (text);
  g_assert_null (strstr (text, "\r\nFrom: forged"));
  g_assert_null (strstr (text, "\r\nInjected:"));
  g_assert_null (strstr (text, "\r\n.\r\n"));
  parse_bounce (f, id, &p);
  g_assert_nonnull (strstr (p.parts[1], "Status: 5.1.1\r\n"));
  g_assert_nonnull (strstr (p.parts[1], "Status: 5.2.2\r\n"));
  g_assert_nonnull (strstr (p.parts[0], "\\x01\\x1B[31m\\x7F\\xFF"));
  parsed_clear (&p);
}

static void
test_original_headers (Fixture *f, gconstpointer data)
{
  GString *msg = g_string_new (NULL);
  g_autofree char *id = NULL;
  g_autofree char *text = NULL;
  Parsed p = { { NULL, NULL, NULL }, NULL };

  (void) data;
  /* 100 KiB of header, one odd 8-bit octet, then a body. */
  g_string_append (msg, "Subject: big\r\nX-Bad: \x80\x01\r\n");
  for (int i = 0; msg->len < 100 * 1024; i++)
    g_string_append_printf (msg, "X-Filler-%d: %0900d\r\n", i, i);
  g_string_append (msg, "\r\nbody\r\n");
  close (f->data_fd);
  f->data_fd = data_file (f->dir, msg->str, msg->len);
  g_string_free (msg, TRUE);
  id = queue_bounce (f, refused, 1, RM_BOUNCE_FAILED, 1);
  text = bounce_text (f, id);
  assert_wire_form (text);
  g_assert_cmpuint (strlen (text), <, 80 * 1024);
  parse_bounce (f, id, &p);
  g_assert_nonnull (strstr (p.parts[2], "\r\nSubject: big\r\n"));
  g_assert_nonnull (strstr (p.parts[2], "\r\nX-Filler-1: "));
  g_assert_nonnull (strstr (p.parts[2], "X-Bad: ??\r\n"));
  parsed_clear (&p);
}

static void
test_unreadable (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) ids = NULL;
  char *id = NULL;
  int fd = open ("/dev/null", O_WRONLY | O_CLOEXEC);

  (void) data;
  g_assert_false (rm_bounce_queue (f->queue, &f->config, f->entry, fd,
                                   refused, 1, RM_BOUNCE_FAILED, 1, &id,
                                   &error));
  close (fd);
  g_assert_error (error, RM_ERROR, RM_ERROR_IO);
  g_assert_null (id);
  ids = rm_queue_list (f->queue, NULL);
  g_assert_cmpuint (ids->len, ==, 0);
  g_assert_false (rm_queue_exists (f->queue, ORIGINAL_ID "-B1"));
}

#define ADD(path, fn)                                                        \
  g_test_add (path, Fixture, NULL, fixture_set_up, fn, fixture_tear_down)

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  g_mime_init ();
  ADD ("/bounce/queued", test_queued);
  ADD ("/bounce/content", test_content);
  ADD ("/bounce/status-codes", test_status_codes);
  ADD ("/bounce/expired", test_expired);
  ADD ("/bounce/null-sender", test_null_sender);
  ADD ("/bounce/once", test_once);
  ADD ("/bounce/hostile-replies", test_hostile_replies);
  ADD ("/bounce/original-headers", test_original_headers);
  ADD ("/bounce/unreadable", test_unreadable);
  rc = g_test_run ();
  g_mime_shutdown ();
  return rc;
}
