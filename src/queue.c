/* The queue on disk. The layout is described in queue.h.
 *
 * An envelope file is a GKeyFile:
 *
 *   [envelope]
 *   version=1
 *   sender=alice@example.org      (empty for the null sender)
 *   recipients=a@example.net;b@example.com;
 *   body=7bit | 8bitmime
 *   created=1764860000
 *   attempts=0
 *   last_attempt=0
 *   next_attempt=0                (not before; seconds since the epoch)
 *   waiting_since=0, waited=0     (time spent waiting for allowances)
 *   dkim=false                    (carries a DKIM-Signature)
 *   from_domain=example.org       (of the From address, for sender_domains)
 *   last_error=...                (optional)
 *
 * A failed/ID.env has the same [envelope] group (recipients there are the
 * ones still queued when it was written) plus a [failed] group with two
 * lists of equal length: recipients and the server's reply to each.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "errors.h"
#include "queue.h"

#define ENVELOPE_GROUP "envelope"
#define FAILED_GROUP "failed"

struct RmQueue {
  char *dir;
};

static const char *const subdirs[] = { "tmp", "data", "env", "failed",
                                       "corrupt" };

RmEntry *
rm_entry_new (void)
{
  RmEntry *entry = g_new0 (RmEntry, 1);

  entry->rcpts = g_ptr_array_new_with_free_func (g_free);
  return entry;
}

void
rm_entry_free (RmEntry *entry)
{
  if (entry == NULL)
    return;
  g_free (entry->id);
  g_free (entry->sender);
  g_ptr_array_unref (entry->rcpts);
  g_free (entry->last_error);
  g_free (entry->from_domain);
  g_free (entry);
}

static char *
queue_path (const RmQueue *queue, const char *sub, const char *id,
            const char *suffix)
{
  return g_strdup_printf ("%s/%s/%s%s", queue->dir, sub, id,
                          suffix ? suffix : "");
}

static gboolean
fsync_dir (const RmQueue *queue, const char *sub, GError **error)
{
  g_autofree char *path = g_build_filename (queue->dir, sub, NULL);
  int fd = open (path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int rc;

  if (fd < 0)
    {
      rm_error_set_errno (error, errno, RM_ERROR_IO, "open %s", path);
      return FALSE;
    }
  rc = fsync (fd);
  close (fd);
  if (rc < 0)
    {
      rm_error_set_errno (error, errno, RM_ERROR_IO, "fsync %s", path);
      return FALSE;
    }
  return TRUE;
}

RmQueue *
rm_queue_open (const char *dir, GError **error)
{
  RmQueue *queue;

  for (gsize i = 0; i < G_N_ELEMENTS (subdirs); i++)
    {
      g_autofree char *path = g_build_filename (dir, subdirs[i], NULL);

      if (g_mkdir_with_parents (path, 0770) < 0)
        {
          rm_error_set_errno (error, errno, RM_ERROR_CANTCREAT,
                              "queue folder %s", path);
          return NULL;
        }
      /* The effective ids: a setgid rampmail works through its group. */
      if (faccessat (AT_FDCWD, path, R_OK | W_OK | X_OK, AT_EACCESS) < 0)
        {
          rm_error_set_errno (error, errno, RM_ERROR_CANTCREAT,
                              "queue folder %s", path);
          return NULL;
        }
    }
  queue = g_new0 (RmQueue, 1);
  queue->dir = g_strdup (dir);
  return queue;
}

void
rm_queue_free (RmQueue *queue)
{
  if (queue == NULL)
    return;
  g_free (queue->dir);
  g_free (queue);
}

const char *
rm_queue_dir (const RmQueue *queue)
{
  return queue->dir;
}

static char *
new_id (void)
{
  return g_strdup_printf ("%016" G_GINT64_MODIFIER "X%06X",
                          g_get_real_time (),
                          (unsigned) (g_random_int () & 0xffffff));
}

/* TRUE if fd is the file that path names now. */
static gboolean
is_at_path (int fd, const char *path)
{
  struct stat by_fd, by_path;

  return fstat (fd, &by_fd) == 0 && lstat (path, &by_path) == 0
         && by_fd.st_dev == by_path.st_dev && by_fd.st_ino == by_path.st_ino;
}

/* Creates path, which must not exist, and takes its lock (flock), held
 * until the file is committed or closed: the cleaner of tmp/ skips locked
 * files, so a file being written is never taken for a crash's remains,
 * however long its writer is silent and whatever the clock says. If the
 * cleaner removed the new file before the lock was taken, creates it
 * again. -1 with errno set on failure. */
static int
create_locked (const char *path)
{
  for (int tries = 0; tries < 5; tries++)
    {
      int fd = open (path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);

      if (fd < 0)
        return -1;
      while (flock (fd, LOCK_EX) < 0)
        if (errno != EINTR)
          {
            int errsv = errno;

            close (fd);
            errno = errsv;
            return -1;
          }
      if (is_at_path (fd, path))
        return fd;
      close (fd);
    }
  errno = EBUSY;
  return -1;
}

static int
open_new (const char *path, GError **error)
{
  int fd = create_locked (path);

  if (fd < 0)
    rm_error_set_errno (error, errno, RM_ERROR_CANTCREAT, "create %s", path);
  return fd;
}

int
rm_queue_create (RmQueue *queue, char **id, GError **error)
{
  for (int tries = 0; tries < 10; tries++)
    {
      g_autofree char *candidate = new_id ();
      g_autofree char *path = queue_path (queue, "tmp", candidate, ".data");
      int fd = create_locked (path);

      if (fd >= 0)
        {
          *id = g_steal_pointer (&candidate);
          return fd;
        }
      if (errno != EEXIST)
        {
          rm_error_set_errno (error, errno, RM_ERROR_CANTCREAT, "create %s",
                              path);
          return -1;
        }
    }
  g_set_error (error, RM_ERROR, RM_ERROR_CANTCREAT,
               "no unused queue id in %s", queue->dir);
  return -1;
}

int
rm_queue_create_named (RmQueue *queue, const char *id, GError **error)
{
  g_autofree char *path = queue_path (queue, "tmp", id, ".data");

  if (rm_queue_exists (queue, id))
    return -1;
  /* Named entries are written only by the holder of the lock of the entry
   * they derive from, so a leftover temporary file is a crash's remains. */
  g_unlink (path);
  return open_new (path, error);
}

gboolean
rm_queue_valid_id (const char *id)
{
  const char *p = id;

  while (g_ascii_isxdigit (*p))
    p++;
  if (p == id)
    return FALSE;
  while (g_str_has_prefix (p, "-B") && g_ascii_isdigit (p[2]))
    {
      p += 2;
      while (g_ascii_isdigit (*p))
        p++;
    }
  return *p == '\0';
}

gboolean
rm_queue_exists (RmQueue *queue, const char *id)
{
  g_autofree char *env = queue_path (queue, "env", id, NULL);

  return g_file_test (env, G_FILE_TEST_EXISTS);
}

void
rm_queue_discard (RmQueue *queue, const char *id)
{
  g_autofree char *data = queue_path (queue, "tmp", id, ".data");
  g_autofree char *rewrite = queue_path (queue, "tmp", id, ".rewrite");
  g_autofree char *env = queue_path (queue, "tmp", id, ".env");

  g_unlink (data);
  g_unlink (rewrite);
  g_unlink (env);
}

int
rm_queue_create_rewrite (RmQueue *queue, const char *id, GError **error)
{
  g_autofree char *path = queue_path (queue, "tmp", id, ".rewrite");

  return open_new (path, error);
}

gboolean
rm_queue_finish_rewrite (RmQueue *queue, const char *id, GError **error)
{
  g_autofree char *from = queue_path (queue, "tmp", id, ".rewrite");
  g_autofree char *to = queue_path (queue, "tmp", id, ".data");

  if (rename (from, to) < 0)
    {
      rm_error_set_errno (error, errno, RM_ERROR_IO, "rename %s", from);
      return FALSE;
    }
  return TRUE;
}

static void
envelope_to_keyfile (const RmEntry *entry, GKeyFile *kf)
{
  g_key_file_set_integer (kf, ENVELOPE_GROUP, "version", 1);
  g_key_file_set_string (kf, ENVELOPE_GROUP, "sender", entry->sender);
  g_key_file_set_string_list (kf, ENVELOPE_GROUP, "recipients",
                              (const char *const *) entry->rcpts->pdata,
                              entry->rcpts->len);
  g_key_file_set_string (kf, ENVELOPE_GROUP, "body",
                         entry->body == RM_BODY_8BITMIME ? "8bitmime"
                                                         : "7bit");
  g_key_file_set_int64 (kf, ENVELOPE_GROUP, "created", entry->created);
  g_key_file_set_integer (kf, ENVELOPE_GROUP, "attempts",
                          (int) entry->attempts);
  g_key_file_set_int64 (kf, ENVELOPE_GROUP, "last_attempt",
                        entry->last_attempt);
  g_key_file_set_int64 (kf, ENVELOPE_GROUP, "next_attempt",
                        entry->next_attempt);
  g_key_file_set_int64 (kf, ENVELOPE_GROUP, "waiting_since",
                        entry->waiting_since);
  g_key_file_set_int64 (kf, ENVELOPE_GROUP, "waited", entry->waited);
  g_key_file_set_boolean (kf, ENVELOPE_GROUP, "dkim", entry->dkim);
  if (entry->from_domain != NULL)
    g_key_file_set_string (kf, ENVELOPE_GROUP, "from_domain",
                           entry->from_domain);
  if (entry->last_error != NULL)
    g_key_file_set_string (kf, ENVELOPE_GROUP, "last_error",
                           entry->last_error);
}

/* Writes kf to tmp/ID.env, fsyncs it and renames it to final. */
static gboolean
write_keyfile (RmQueue *queue, const char *id, GKeyFile *kf,
               const char *final, GError **error)
{
  g_autofree char *tmp = queue_path (queue, "tmp", id, ".env");
  gsize len;
  g_autofree char *text = g_key_file_to_data (kf, &len, NULL);
  int fd;

  g_unlink (tmp);
  fd = open_new (tmp, error);
  if (fd < 0)
    return FALSE;
  for (gsize done = 0; done < len;)
    {
      ssize_t n = write (fd, text + done, len - done);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          rm_error_set_errno (error, errno, RM_ERROR_IO, "write %s", tmp);
          close (fd);
          g_unlink (tmp);
          return FALSE;
        }
      done += (gsize) n;
    }
  /* Closed (unlocked) only once renamed: see create_locked. */
  if (fsync (fd) < 0)
    {
      rm_error_set_errno (error, errno, RM_ERROR_IO, "fsync %s", tmp);
      close (fd);
      g_unlink (tmp);
      return FALSE;
    }
  if (rename (tmp, final) < 0)
    {
      rm_error_set_errno (error, errno, RM_ERROR_IO, "rename %s", tmp);
      close (fd);
      g_unlink (tmp);
      return FALSE;
    }
  close (fd);
  return TRUE;
}

gboolean
rm_queue_commit (RmQueue *queue, RmEntry *entry, int data_fd, GError **error)
{
  g_autofree char *tmp = queue_path (queue, "tmp", entry->id, ".data");
  g_autofree char *data = queue_path (queue, "data", entry->id, NULL);
  g_autofree char *env = queue_path (queue, "env", entry->id, NULL);
  g_autoptr (GKeyFile) kf = g_key_file_new ();

  if (fsync (data_fd) < 0)
    {
      rm_error_set_errno (error, errno, RM_ERROR_IO, "fsync %s", tmp);
      goto fail;
    }
  if (rename (tmp, data) < 0)
    {
      rm_error_set_errno (error, errno, RM_ERROR_IO, "rename %s", tmp);
      goto fail;
    }
  if (!fsync_dir (queue, "data", error))
    goto fail_data;

  envelope_to_keyfile (entry, kf);
  if (!write_keyfile (queue, entry->id, kf, env, error))
    goto fail_data;
  if (!fsync_dir (queue, "env", error))
    {
      g_unlink (env);
      goto fail_data;
    }
  /* Committed: the entry's lock is now for whoever delivers it (the data
   * file kept the lock of create_locked through the rename, so that it was
   * never taken for an orphan meanwhile). */
  flock (data_fd, LOCK_UN);
  return TRUE;

fail_data:
  g_unlink (data);
fail:
  rm_queue_discard (queue, entry->id);
  g_prefix_error (error, "cannot queue the message: ");
  return FALSE;
}

static gint
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

GPtrArray *
rm_queue_list (RmQueue *queue, GError **error)
{
  g_autofree char *path = g_build_filename (queue->dir, "env", NULL);
  g_autoptr (GDir) dir = g_dir_open (path, 0, error);
  GPtrArray *ids;
  const char *name;

  if (dir == NULL)
    return NULL;
  ids = g_ptr_array_new_with_free_func (g_free);
  while ((name = g_dir_read_name (dir)) != NULL)
    if (name[0] != '.')
      g_ptr_array_add (ids, g_strdup (name));
  g_ptr_array_sort (ids, compare_strings);
  return ids;
}

int
rm_queue_lock (RmQueue *queue, const char *id, GError **error)
{
  g_autofree char *path = queue_path (queue, "data", id, NULL);
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd < 0 && errno == ENOENT)
    return -1; /* delivered by another process meanwhile */
  if (fd < 0)
    {
      rm_error_set_errno (error, errno, RM_ERROR_IO, "open %s", path);
      return -1;
    }
  if (flock (fd, LOCK_EX | LOCK_NB) < 0)
    {
      int errsv = errno;

      close (fd);
      if (errsv != EWOULDBLOCK)
        rm_error_set_errno (error, errsv, RM_ERROR_IO, "lock %s", path);
      return -1;
    }
  return fd;
}

static gboolean
entry_from_keyfile (GKeyFile *kf, RmEntry *entry, GError **error)
{
  g_auto (GStrv) rcpts = NULL;
  g_autofree char *body = NULL;
  gsize n = 0;

  entry->sender = g_key_file_get_string (kf, ENVELOPE_GROUP, "sender", error);
  if (entry->sender == NULL)
    return FALSE;
  rcpts = g_key_file_get_string_list (kf, ENVELOPE_GROUP, "recipients", &n,
                                      NULL);
  for (gsize i = 0; i < n; i++)
    g_ptr_array_add (entry->rcpts, g_strdup (rcpts[i]));
  body = g_key_file_get_string (kf, ENVELOPE_GROUP, "body", NULL);
  entry->body = g_strcmp0 (body, "8bitmime") == 0 ? RM_BODY_8BITMIME
                                                  : RM_BODY_7BIT;
  entry->created = g_key_file_get_int64 (kf, ENVELOPE_GROUP, "created", NULL);
  entry->attempts = (guint) g_key_file_get_integer (kf, ENVELOPE_GROUP,
                                                    "attempts", NULL);
  entry->last_attempt = g_key_file_get_int64 (kf, ENVELOPE_GROUP,
                                              "last_attempt", NULL);
  entry->next_attempt = g_key_file_get_int64 (kf, ENVELOPE_GROUP,
                                              "next_attempt", NULL);
  entry->waiting_since = g_key_file_get_int64 (kf, ENVELOPE_GROUP,
                                               "waiting_since", NULL);
  entry->waited = g_key_file_get_int64 (kf, ENVELOPE_GROUP, "waited", NULL);
  entry->dkim = g_key_file_get_boolean (kf, ENVELOPE_GROUP, "dkim", NULL);
  entry->from_domain = g_key_file_get_string (kf, ENVELOPE_GROUP,
                                              "from_domain", NULL);
  entry->last_error = g_key_file_get_string (kf, ENVELOPE_GROUP, "last_error",
                                             NULL);
  if (entry->rcpts->len == 0
      || !g_key_file_has_key (kf, ENVELOPE_GROUP, "created", NULL))
    {
      g_set_error (error, RM_ERROR, RM_ERROR_DATA,
                   "no recipients or no creation time");
      return FALSE;
    }
  return TRUE;
}

RmEntry *
rm_queue_load (RmQueue *queue, const char *id, GError **error)
{
  g_autofree char *path = queue_path (queue, "env", id, NULL);
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (RmEntry) entry = rm_entry_new ();

  if (!g_key_file_load_from_file (kf, path, G_KEY_FILE_NONE, error)
      || !entry_from_keyfile (kf, entry, error))
    {
      g_prefix_error (error, "envelope %s: ", path);
      return NULL;
    }
  entry->id = g_strdup (id);
  return g_steal_pointer (&entry);
}

gboolean
rm_queue_update (RmQueue *queue, RmEntry *entry, GError **error)
{
  g_autofree char *env = queue_path (queue, "env", entry->id, NULL);
  g_autoptr (GKeyFile) kf = g_key_file_new ();

  envelope_to_keyfile (entry, kf);
  if (!write_keyfile (queue, entry->id, kf, env, error))
    return FALSE;
  return fsync_dir (queue, "env", error);
}

gboolean
rm_queue_data_missing (RmQueue *queue, const char *id)
{
  g_autofree char *data = queue_path (queue, "data", id, NULL);
  struct stat st;

  return lstat (data, &st) < 0 && errno == ENOENT
         && rm_queue_exists (queue, id);
}

gboolean
rm_queue_remove_env (RmQueue *queue, const char *id, GError **error)
{
  g_autofree char *env = queue_path (queue, "env", id, NULL);

  if (g_unlink (env) < 0 && errno != ENOENT)
    {
      rm_error_set_errno (error, errno, RM_ERROR_IO, "remove %s", env);
      return FALSE;
    }
  return TRUE;
}

gboolean
rm_queue_sync_removals (RmQueue *queue, GError **error)
{
  return fsync_dir (queue, "env", error);
}

gboolean
rm_queue_remove_data (RmQueue *queue, const char *id, GError **error)
{
  g_autofree char *data = queue_path (queue, "data", id, NULL);

  if (g_unlink (data) < 0 && errno != ENOENT)
    {
      rm_error_set_errno (error, errno, RM_ERROR_IO, "remove %s", data);
      return FALSE;
    }
  return TRUE;
}

gboolean
rm_queue_remove (RmQueue *queue, const char *id, GError **error)
{
  return rm_queue_remove_env (queue, id, error)
         && rm_queue_sync_removals (queue, error)
         && rm_queue_remove_data (queue, id, error);
}

/* Removes data/ID (at file) if it is an orphan: no env/ID and nobody
 * holds its lock (a commit or a removal killed between its two steps).
 * The lock is held while the file is removed, and the file must still be
 * the one locked, so that a new entry committed under the same id (a
 * bounce queued again) is never taken. */
static gboolean
remove_orphan (RmQueue *queue, const char *id, const char *file)
{
  gboolean removed = FALSE;
  int fd;

  if (rm_queue_exists (queue, id))
    return FALSE;
  fd = rm_queue_lock (queue, id, NULL);
  if (fd < 0)
    return FALSE;
  if (!rm_queue_exists (queue, id) && is_at_path (fd, file))
    removed = g_unlink (file) == 0;
  close (fd);
  return removed;
}

/* Removes a file of tmp/ unless its writer holds its lock (see
 * create_locked); the lock is held while the file is removed. */
static gboolean
remove_unlocked (const char *file)
{
  int fd = open (file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  gboolean removed = FALSE;

  if (fd < 0)
    return FALSE;
  if (flock (fd, LOCK_EX | LOCK_NB) == 0 && is_at_path (fd, file))
    removed = g_unlink (file) == 0;
  close (fd);
  return removed;
}

static guint
clean_folder (RmQueue *queue, const char *sub, gint64 max_age)
{
  g_autofree char *path = g_build_filename (queue->dir, sub, NULL);
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  const char *name;
  guint removed = 0;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *file = g_build_filename (path, name, NULL);
      struct stat st;

      if (lstat (file, &st) < 0 || !S_ISREG (st.st_mode)
          || now - st.st_mtime <= max_age)
        continue;
      if (strcmp (sub, "data") == 0)
        {
          if (remove_orphan (queue, name, file))
            removed++;
        }
      else if (remove_unlocked (file))
        removed++;
    }
  return removed;
}

guint
rm_queue_clean_tmp (RmQueue *queue, gint64 max_age)
{
  return clean_folder (queue, "tmp", max_age)
         + clean_folder (queue, "data", max_age);
}

gboolean
rm_queue_move_corrupt (RmQueue *queue, const char *id, GError **error)
{
  static const char *const from_dirs[] = { "env", "data" };
  static const char *const suffixes[] = { ".env", ".data" };

  for (gsize i = 0; i < G_N_ELEMENTS (from_dirs); i++)
    {
      g_autofree char *from = queue_path (queue, from_dirs[i], id, NULL);
      g_autofree char *to = queue_path (queue, "corrupt", id, suffixes[i]);

      if (rename (from, to) < 0 && errno != ENOENT)
        {
          rm_error_set_errno (error, errno, RM_ERROR_IO, "move %s aside",
                              from);
          return FALSE;
        }
    }
  return fsync_dir (queue, "env", error)
         && fsync_dir (queue, "corrupt", error);
}

int
rm_queue_lock_runner (RmQueue *queue, gboolean wait, GError **error)
{
  g_autofree char *path = g_build_filename (queue->dir, "runner.lock", NULL);
  int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0660);

  if (fd < 0)
    {
      rm_error_set_errno (error, errno, RM_ERROR_CANTCREAT, "open %s", path);
      return -1;
    }
  while (flock (fd, LOCK_EX | (wait ? 0 : LOCK_NB)) < 0)
    {
      int errsv = errno;

      if (errsv == EINTR)
        continue;
      close (fd);
      if (errsv != EWOULDBLOCK)
        rm_error_set_errno (error, errsv, RM_ERROR_IO, "lock %s", path);
      return -1;
    }
  return fd;
}

/* Appends items to the string list group/key of kf. */
static void
append_list (GKeyFile *kf, const char *key, GPtrArray *items)
{
  gsize n = 0;
  g_auto (GStrv) old = g_key_file_get_string_list (kf, FAILED_GROUP, key, &n,
                                                   NULL);
  g_autoptr (GPtrArray) all = g_ptr_array_new ();

  for (gsize i = 0; i < n; i++)
    g_ptr_array_add (all, old[i]);
  for (guint i = 0; i < items->len; i++)
    g_ptr_array_add (all, items->pdata[i]);
  g_key_file_set_string_list (kf, FAILED_GROUP, key,
                              (const char *const *) all->pdata, all->len);
}

gboolean
rm_queue_keep_failed (RmQueue *queue, const RmEntry *entry, GPtrArray *rcpts,
                      GPtrArray *replies, GError **error)
{
  g_autofree char *data = queue_path (queue, "data", entry->id, NULL);
  g_autofree char *link_path = queue_path (queue, "failed", entry->id,
                                           ".data");
  g_autofree char *env = queue_path (queue, "failed", entry->id, ".env");
  g_autoptr (GKeyFile) kf = g_key_file_new ();

  /* An earlier attempt may have refused others already: add to them. */
  g_key_file_load_from_file (kf, env, G_KEY_FILE_NONE, NULL);
  if (link (data, link_path) < 0 && errno != EEXIST)
    {
      rm_error_set_errno (error, errno, RM_ERROR_IO, "link %s", link_path);
      return FALSE;
    }
  envelope_to_keyfile (entry, kf);
  append_list (kf, "recipients", rcpts);
  append_list (kf, "replies", replies);
  if (!write_keyfile (queue, entry->id, kf, env, error))
    return FALSE;
  return fsync_dir (queue, "failed", error);
}
