/* The local queue: every accepted message waits here until a server takes
 * it, and nothing leaves it except by delivery or by the failed area.
 *
 * On disk, under queue_dir:
 *
 *   tmp/ID.data, tmp/ID.env   being written; never read by a queue run,
 *                             removed by the writer on failure
 *   data/ID                   the message in wire form (CRLF, no line over
 *                             998 octets, no NUL); never rewritten once
 *                             committed; the lock of an entry is an
 *                             flock() on this file
 *   env/ID                    the envelope, a GKeyFile (see queue.c); its
 *                             presence is the commit point: it is renamed
 *                             into place last, after data/ID and both
 *                             folders were fsync'd
 *   failed/ID.data, .env      refused recipients with the server's reply
 *                             that could be bounced nowhere, kept for the
 *                             administrator (a hard link of the data plus
 *                             its own envelope)
 *   corrupt/ID.data, .env     entries whose envelope could not be read,
 *                             moved aside untouched
 *   runner.lock               flock()ed by the one queue runner at work
 *
 * IDs are 16 hex digits of microseconds since the epoch followed by 6
 * random hex digits, so they sort in submission order.
 */
#ifndef RM_QUEUE_H
#define RM_QUEUE_H

#include <glib.h>
#include <rampmail/plugin.h>

typedef struct RmQueue RmQueue;

typedef struct {
  char *id;
  char *sender;     /* "" for the null sender */
  GPtrArray *rcpts; /* recipients still to deliver (char *) */
  RmBodyType body;
  gint64 created; /* seconds since the epoch */
  guint attempts;
  gint64 last_attempt;  /* seconds since the epoch, 0 if never */
  gint64 next_attempt;  /* not before this (seconds); 0: at once */
  gint64 waiting_since; /* waiting for a server's allowance since; 0 */
  gint64 waited;        /* seconds spent waiting for allowances before:
                          * not failing, so not counted for expiry */
  gboolean dkim;        /* the message carries a DKIM-Signature */
  char *from_domain;    /* the domain of its From address, or NULL */
  char *last_error;     /* NULL if none */
} RmEntry;

RmEntry *rm_entry_new (void);
void rm_entry_free (RmEntry *entry);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RmEntry, rm_entry_free)

/* Opens dir, creating it and its folders (mode 0770: the group of a setgid
 * rampmail shares them) when missing. */
RmQueue *rm_queue_open (const char *dir, GError **error);
void rm_queue_free (RmQueue *queue);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RmQueue, rm_queue_free)

const char *rm_queue_dir (const RmQueue *queue);

/* Creates tmp/ID.data for a new message and returns a read-write fd to it
 * (close-on-exec), with the new ID in *id. -1 with error on failure. */
int rm_queue_create (RmQueue *queue, char **id, GError **error);

/* Like rm_queue_create() with a given id (used for bounces, whose ids
 * derive from the original's; only the holder of the original's lock may
 * call it). Returns -1 with error unset if that id is already committed. */
int rm_queue_create_named (RmQueue *queue, const char *id, GError **error);

/* TRUE if id has the shape of a queue id (hex digits, and "-B" and digits
 * for a bounce): never a path. */
gboolean rm_queue_valid_id (const char *id);

/* TRUE if entry id is committed (env/ID exists). */
gboolean rm_queue_exists (RmQueue *queue, const char *id);

/* Drops a message that was never committed (tmp/ID.data). */
void rm_queue_discard (RmQueue *queue, const char *id);

/* A message that must be rewritten before commit (see mime.h) is written
 * again to tmp/ID.rewrite: rm_queue_create_rewrite() returns a read-write
 * fd for it, rm_queue_finish_rewrite() renames it over tmp/ID.data. The
 * caller then commits the rewrite's fd. */
int rm_queue_create_rewrite (RmQueue *queue, const char *id, GError **error);
gboolean rm_queue_finish_rewrite (RmQueue *queue, const char *id,
                                  GError **error);

/* Commits entry->id: fsyncs data_fd, renames it to data/ID, writes and
 * fsyncs the envelope, renames it to env/ID, fsyncs both folders. On
 * failure nothing is committed and the temporary files are removed. */
gboolean rm_queue_commit (RmQueue *queue, RmEntry *entry, int data_fd,
                          GError **error);

/* IDs of committed entries in submission order. */
GPtrArray *rm_queue_list (RmQueue *queue, GError **error);

/* Locks entry id without waiting. Returns the lock fd (also a read-only fd
 * on the data); -1 with error unset if another process holds it or the
 * entry is gone, -1 with error set if it cannot be read. Closing the fd unlocks. */
int rm_queue_lock (RmQueue *queue, const char *id, GError **error);

/* Reads the envelope of id. */
RmEntry *rm_queue_load (RmQueue *queue, const char *id, GError **error);

/* Rewrites the envelope atomically (write, fsync, rename). */
gboolean rm_queue_update (RmQueue *queue, RmEntry *entry, GError **error);

/* TRUE if entry id has an envelope but no data file: never a state the
 * queue passes through (data is committed before, and removed after, the
 * envelope), so the entry is corrupt (a file removed by hand). */
gboolean rm_queue_data_missing (RmQueue *queue, const char *id);

/* Removes a fully delivered entry: the envelope first, then the data. */
gboolean rm_queue_remove (RmQueue *queue, const char *id, GError **error);

/* The same in three steps, for many entries with one disk sync: remove
 * each envelope (at once: a killed process never sends it again), sync
 * the env/ folder once, then remove each data file. */
gboolean rm_queue_remove_env (RmQueue *queue, const char *id, GError **error);
gboolean rm_queue_sync_removals (RmQueue *queue, GError **error);
gboolean rm_queue_remove_data (RmQueue *queue, const char *id,
                               GError **error);

/* Removes files in tmp/ older than max_age seconds (what a submission or a
 * bounce killed before its commit left behind), and data/ files as old
 * that have no envelope (a commit or a removal killed between its two
 * steps): never an accepted message. Returns how many were removed. */
guint rm_queue_clean_tmp (RmQueue *queue, gint64 max_age);

/* Moves entry id aside to corrupt/ (its envelope cannot be read). */
gboolean rm_queue_move_corrupt (RmQueue *queue, const char *id,
                                GError **error);

/* Takes the queue runner's lock: the returned fd holds it until closed
 * (also across fork: the child keeps it when the parent closes its fd).
 * With wait, blocks until the lock is free; without, returns -1 with
 * error unset when another runner holds it. */
int rm_queue_lock_runner (RmQueue *queue, gboolean wait, GError **error);

/* Keeps refused recipients in the failed area: failed/ID.data (a hard
 * link to the data) and failed/ID.env listing each recipient with its
 * reply. rcpts and replies have the same length. Called before the
 * recipients are dropped from the live envelope. */
gboolean rm_queue_keep_failed (RmQueue *queue, const RmEntry *entry,
                               GPtrArray *rcpts, GPtrArray *replies,
                               GError **error);

#endif
