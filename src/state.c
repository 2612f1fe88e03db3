/* SQLite state store; see state.h for the schema. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "errors.h"
#include "state.h"

#define BUSY_TIMEOUT_MS 60000
/* PRAGMA user_version of a database with the schema below. */
#define SCHEMA_VERSION 2

struct RmState {
  sqlite3 *db;
  /* Prepared statements, by the address of their SQL text (a literal):
   * preparing is a third of a queue run's work otherwise. */
  GHashTable *stmts;
  gboolean in_batch;   /* in rm_state_batch_begin's transaction */
  gboolean reaped;     /* dead processes' reservations reaped in it */
  gboolean batch_lost; /* SQLite rolled the batch's transaction back */
};

static gboolean
db_fail (RmState *state, const char *what, GError **error)
{
  g_set_error (error, RM_ERROR, RM_ERROR_TEMPFAIL, "state database: %s: %s",
               what, sqlite3_errmsg (state->db));
  return FALSE;
}

static void
finalize_stmt (gpointer stmt)
{
  sqlite3_finalize (stmt);
}

/* Like sqlite3_prepare_v2, but the statement is prepared once per
 * connection and kept: give it back with done (), never finalize it. */
static int
cached_prepare (RmState *state, const char *sql, sqlite3_stmt **stmt)
{
  int rc;

  *stmt = g_hash_table_lookup (state->stmts, sql);
  if (*stmt != NULL)
    return SQLITE_OK;
  rc = sqlite3_prepare_v3 (state->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                           stmt, NULL);
  if (rc != SQLITE_OK)
    {
      sqlite3_finalize (*stmt);
      *stmt = NULL;
      return rc;
    }
  g_hash_table_insert (state->stmts, (gpointer) sql, *stmt);
  return SQLITE_OK;
}

/* Ready for the next use: reset, with its parameters cleared. */
static void
done (sqlite3_stmt *stmt)
{
  if (stmt == NULL)
    return;
  sqlite3_reset (stmt);
  sqlite3_clear_bindings (stmt);
}

/* Runs one statement (sql: a literal; one statement only), kept prepared
 * like the others: BEGIN and COMMIT cost a parse each time otherwise. */
static gboolean
exec_sql (RmState *state, const char *sql, GError **error)
{
  sqlite3_stmt *stmt;
  int rc;

  if (cached_prepare (state, sql, &stmt) != SQLITE_OK)
    return db_fail (state, sql, error);
  rc = sqlite3_step (stmt);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW)
    {
      db_fail (state, sql, error);
      done (stmt);
      return FALSE;
    }
  done (stmt);
  return TRUE;
}

static gint64 query_int (RmState *state, const char *sql, const char *types,
                         ...);

RmState *
rm_state_open (const char *state_dir, GError **error)
{
  g_autofree char *path = g_build_filename (state_dir, "state.sqlite", NULL);
  g_autoptr (RmState) state = g_new0 (RmState, 1);

  if (g_mkdir_with_parents (state_dir, 0770) < 0)
    {
      rm_error_set_errno (error, errno, RM_ERROR_CANTCREAT, "state folder %s",
                          state_dir);
      return NULL;
    }
  /* Create it group-writable: a setgid rampmail shares it with its group,
   * and SQLite gives its -wal and -shm files the database's mode. */
  {
    int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0660);

    if (fd >= 0)
      close (fd);
  }
  if (sqlite3_open_v2 (path, &state->db,
                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL)
      != SQLITE_OK)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_CANTCREAT, "open %s: %s", path,
                   state->db ? sqlite3_errmsg (state->db) : "out of memory");
      return NULL;
    }
  state->stmts = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                        finalize_stmt);
  sqlite3_busy_timeout (state->db, BUSY_TIMEOUT_MS);
  /* Each rampmail is a short process: checkpointing the WAL into the
   * database and deleting it at every exit cost three disk syncs per
   * message (the WAL, the database, and the folder when the next process
   * creates the WAL again). The WAL stays, with its committed
   * transactions, and is checkpointed when it reaches SQLite's automatic
   * threshold (1000 pages), by whichever process commits then. */
  sqlite3_db_config (state->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
  if (!exec_sql (state, "PRAGMA journal_mode=WAL", error)
      || !exec_sql (state, "PRAGMA synchronous=FULL", error))
    {
      g_prefix_error (error, "%s: ", path);
      return NULL;
    }
  /* The schema is made once; user_version says it is there. */
  if (query_int (state, "PRAGMA user_version", "") == SCHEMA_VERSION)
    return g_steal_pointer (&state);
  if (!exec_sql (state, "BEGIN IMMEDIATE", error)
      || !exec_sql (state,
                    "CREATE TABLE IF NOT EXISTS picks ("
                    " server TEXT NOT NULL, day TEXT NOT NULL,"
                    " count INTEGER NOT NULL,"
                    " PRIMARY KEY (server, day))",
                    error)
      || !exec_sql (state,
                    "CREATE TABLE IF NOT EXISTS sent ("
                    " server TEXT NOT NULL, ts INTEGER NOT NULL,"
                    " day TEXT NOT NULL, rcpts INTEGER NOT NULL)",
                    error)
      || !exec_sql (state,
                    "CREATE INDEX IF NOT EXISTS sent_server_day"
                    " ON sent (server, day)",
                    error)
      || !exec_sql (state,
                    "CREATE INDEX IF NOT EXISTS sent_server_ts"
                    " ON sent (server, ts)",
                    error)
      || !exec_sql (state,
                    "CREATE TABLE IF NOT EXISTS reserved ("
                    " id INTEGER PRIMARY KEY, server TEXT NOT NULL,"
                    " ts INTEGER NOT NULL, day TEXT NOT NULL,"
                    " rcpts INTEGER NOT NULL, pid INTEGER NOT NULL,"
                    " sending INTEGER NOT NULL DEFAULT 0)",
                    error)
      || !exec_sql (state,
                    "CREATE INDEX IF NOT EXISTS reserved_server_ts"
                    " ON reserved (server, ts)",
                    error)
      || !exec_sql (state,
                    "CREATE TABLE IF NOT EXISTS backoff ("
                    " server TEXT PRIMARY KEY, failures INTEGER NOT NULL,"
                    " until INTEGER NOT NULL, reason TEXT)",
                    error)
      || !exec_sql (
          state, "PRAGMA user_version = " G_STRINGIFY (SCHEMA_VERSION), error)
      || !exec_sql (state, "COMMIT", error))
    {
      sqlite3_exec (state->db, "ROLLBACK", NULL, NULL, NULL);
      g_prefix_error (error, "%s: ", path);
      return NULL;
    }
  return g_steal_pointer (&state);
}

void
rm_state_free (RmState *state)
{
  if (state == NULL)
    return;
  if (state->stmts != NULL)
    g_hash_table_destroy (state->stmts);
  sqlite3_close (state->db);
  g_free (state);
}

static gint64
read_count (RmState *state, const char *day, const char *server)
{
  sqlite3_stmt *stmt = NULL;
  gint64 count = 0;

  if (cached_prepare (state,
                      "SELECT count FROM picks"
                      " WHERE server = ?1 AND day = ?2",
                      &stmt)
      != SQLITE_OK)
    return 0;
  sqlite3_bind_text (stmt, 1, server, -1, SQLITE_STATIC);
  sqlite3_bind_text (stmt, 2, day, -1, SQLITE_STATIC);
  if (sqlite3_step (stmt) == SQLITE_ROW)
    count = sqlite3_column_int64 (stmt, 0);
  done (stmt);
  return count;
}

static gboolean
add_pick (RmState *state, const char *day, const char *server, GError **error)
{
  sqlite3_stmt *stmt = NULL;
  int rc;

  if (cached_prepare (state,
                      "INSERT INTO picks (server, day, count)"
                      " VALUES (?1, ?2, 1) ON CONFLICT (server, day)"
                      " DO UPDATE SET count = count + 1",
                      &stmt)
      != SQLITE_OK)
    return db_fail (state, "prepare", error);
  sqlite3_bind_text (stmt, 1, server, -1, SQLITE_STATIC);
  sqlite3_bind_text (stmt, 2, day, -1, SQLITE_STATIC);
  rc = sqlite3_step (stmt);
  done (stmt);
  if (rc != SQLITE_DONE)
    return db_fail (state, "update", error);
  return TRUE;
}

gboolean
rm_state_choose (RmState *state, const char *day, GPtrArray *names,
                 const RmSelectorOps *selector, GRand *rnd, guint *chosen,
                 GError **error)
{
  g_autofree RmCandidate *cands = g_new0 (RmCandidate, names->len);
  size_t pick;

  g_return_val_if_fail (names->len > 0, FALSE);
  if (!exec_sql (state, "BEGIN IMMEDIATE", error))
    return FALSE;
  for (guint i = 0; i < names->len; i++)
    {
      cands[i].name = names->pdata[i];
      cands[i].today = read_count (state, day, names->pdata[i]);
    }
  pick = selector->choose (cands, names->len, rnd);
  if (pick >= names->len)
    pick = 0;
  if (!add_pick (state, day, names->pdata[pick], error))
    {
      sqlite3_exec (state->db, "ROLLBACK", NULL, NULL, NULL);
      return FALSE;
    }
  if (!exec_sql (state, "COMMIT", error))
    {
      sqlite3_exec (state->db, "ROLLBACK", NULL, NULL, NULL);
      return FALSE;
    }
  *chosen = (guint) pick;
  return TRUE;
}

gint64
rm_state_backoff_until (RmState *state, const char *server)
{
  sqlite3_stmt *stmt = NULL;
  gint64 until = 0;

  if (cached_prepare (state, "SELECT until FROM backoff WHERE server = ?1",
                      &stmt)
      != SQLITE_OK)
    return 0;
  sqlite3_bind_text (stmt, 1, server, -1, SQLITE_STATIC);
  if (sqlite3_step (stmt) == SQLITE_ROW)
    until = sqlite3_column_int64 (stmt, 0);
  done (stmt);
  return until;
}

gint64
rm_state_retry_delay (guint failures, guint min, guint max)
{
  gint64 delay = min;

  for (guint i = 1; i < failures && delay < max; i++)
    delay *= 2;
  return MIN (delay, (gint64) max);
}

gint64
rm_state_server_result (RmState *state, const char *server, gboolean ok,
                        gint64 now, guint min, guint max, GError **error)
{
  sqlite3_stmt *stmt = NULL;
  gint64 failures = 0;
  gint64 delay = 0;
  int rc;

  if (ok)
    {
      if (cached_prepare (state, "DELETE FROM backoff WHERE server = ?1",
                          &stmt)
          != SQLITE_OK)
        {
          db_fail (state, "prepare", error);
          return 0;
        }
      sqlite3_bind_text (stmt, 1, server, -1, SQLITE_STATIC);
    }
  else
    {
      if (!exec_sql (state, "BEGIN IMMEDIATE", error))
        return 0;
      if (cached_prepare (
              state, "SELECT failures FROM backoff WHERE server = ?1", &stmt)
          == SQLITE_OK)
        {
          sqlite3_bind_text (stmt, 1, server, -1, SQLITE_STATIC);
          if (sqlite3_step (stmt) == SQLITE_ROW)
            failures = sqlite3_column_int64 (stmt, 0);
          done (stmt);
        }
      failures++;
      delay = rm_state_retry_delay ((guint) failures, min, max);
      if (cached_prepare (state,
                          "INSERT OR REPLACE INTO backoff"
                          " (server, failures, until) VALUES (?1, ?2, ?3)",
                          &stmt)
          != SQLITE_OK)
        {
          sqlite3_exec (state->db, "ROLLBACK", NULL, NULL, NULL);
          {
            db_fail (state, "prepare", error);
            return 0;
          }
        }
      sqlite3_bind_text (stmt, 1, server, -1, SQLITE_STATIC);
      sqlite3_bind_int64 (stmt, 2, failures);
      sqlite3_bind_int64 (stmt, 3, now + delay);
    }
  rc = sqlite3_step (stmt);
  done (stmt);
  if (rc != SQLITE_DONE)
    {
      if (!ok)
        sqlite3_exec (state->db, "ROLLBACK", NULL, NULL, NULL);
      db_fail (state, "update", error);
      return 0;
    }
  if (!ok && !exec_sql (state, "COMMIT", error))
    {
      sqlite3_exec (state->db, "ROLLBACK", NULL, NULL, NULL);
      return 0;
    }
  return delay;
}

gint64
rm_state_count (RmState *state, const char *day, const char *server)
{
  return read_count (state, day, server);
}

/* ---- quotas --------------------------------------------------------------- */

/* A statement (sql: a literal, see cached_prepare) with text and integer
 * parameters bound in order: "s" binds the next const char *, "i" the
 * next gint64. NULL if it cannot be prepared. */
static sqlite3_stmt *
prepare_va (RmState *state, const char *sql, const char *types, va_list ap)
{
  sqlite3_stmt *stmt = NULL;

  if (cached_prepare (state, sql, &stmt) != SQLITE_OK)
    return NULL;
  for (int i = 0; types[i] != '\0'; i++)
    if (types[i] == 's')
      sqlite3_bind_text (stmt, i + 1, va_arg (ap, const char *), -1,
                         SQLITE_TRANSIENT);
    else
      sqlite3_bind_int64 (stmt, i + 1, va_arg (ap, gint64));
  return stmt;
}

static sqlite3_stmt *
prepare (RmState *state, const char *sql, const char *types, ...)
{
  sqlite3_stmt *stmt;
  va_list ap;

  va_start (ap, types);
  stmt = prepare_va (state, sql, types, ap);
  va_end (ap);
  return stmt;
}

/* The single integer a query returns (0 for none or NULL). */
static gint64
query_int (RmState *state, const char *sql, const char *types, ...)
{
  sqlite3_stmt *stmt;
  gint64 value = 0;
  va_list ap;

  va_start (ap, types);
  stmt = prepare_va (state, sql, types, ap);
  va_end (ap);
  if (stmt != NULL && sqlite3_step (stmt) == SQLITE_ROW)
    value = sqlite3_column_int64 (stmt, 0);
  done (stmt);
  return value;
}

static char *
day_text (gint64 ts, GTimeZone *tz)
{
  g_autoptr (GDateTime) utc = g_date_time_new_from_unix_utc (ts);
  g_autoptr (GDateTime) local = g_date_time_to_timezone (utc, tz);

  return g_date_time_format (local, "%Y-%m-%d");
}

static guint32
day_number (const char *text)
{
  int y = 0, m = 0, d = 0;

  if (sscanf (text, "%d-%d-%d", &y, &m, &d) != 3
      || !g_date_valid_dmy ((GDateDay) d, (GDateMonth) m, (GDateYear) y))
    return 0;
  {
    g_autoptr (GDate) date = g_date_new_dmy ((GDateDay) d, (GDateMonth) m,
                                             (GDateYear) y);
    return g_date_get_julian (date);
  }
}

/* Start of the next local day after ts, as seconds since the epoch. */
static gint64
next_midnight (gint64 ts, GTimeZone *tz)
{
  g_autoptr (GDateTime) utc = g_date_time_new_from_unix_utc (ts);
  g_autoptr (GDateTime) local = g_date_time_to_timezone (utc, tz);
  g_autoptr (GDateTime) midnight = g_date_time_new (
      tz, g_date_time_get_year (local), g_date_time_get_month (local),
      g_date_time_get_day_of_month (local), 0, 0, 0);
  g_autoptr (GDateTime) next = g_date_time_add_days (midnight, 1);

  return g_date_time_to_unix (next);
}

/* Drops the reservations of processes that are gone; those that had
 * started sending count as sent (their outcome is unknown). */
static void
reap_reservations (RmState *state)
{
  sqlite3_stmt *stmt = NULL;
  g_autoptr (GArray) dead = g_array_new (FALSE, FALSE, sizeof (gint64));

  if (cached_prepare (state, "SELECT id, pid FROM reserved WHERE pid != ?1",
                      &stmt)
      != SQLITE_OK)
    return;
  sqlite3_bind_int64 (stmt, 1, (gint64) getpid ());
  while (sqlite3_step (stmt) == SQLITE_ROW)
    {
      gint64 id = sqlite3_column_int64 (stmt, 0);
      pid_t pid = (pid_t) sqlite3_column_int64 (stmt, 1);

      if (kill (pid, 0) < 0 && errno == ESRCH)
        g_array_append_val (dead, id);
    }
  done (stmt);
  for (guint i = 0; i < dead->len; i++)
    {
      gint64 id = g_array_index (dead, gint64, i);
      sqlite3_stmt *move = prepare (
          state,
          "INSERT INTO sent (server, ts, day, rcpts)"
          " SELECT server, ts, day, rcpts FROM reserved"
          " WHERE id = ?1 AND sending = 1",
          "i", id);
      sqlite3_stmt *drop = prepare (
          state, "DELETE FROM reserved WHERE id = ?1", "i", id);

      if (move != NULL)
        sqlite3_step (move);
      if (drop != NULL)
        sqlite3_step (drop);
      done (move);
      done (drop);
    }
}

/* The days before today on which server sent, oldest first. */
static GArray *
history (RmState *state, const char *server, const char *today)
{
  GArray *days = g_array_new (FALSE, FALSE, sizeof (RmSendDay));
  sqlite3_stmt *stmt = prepare (
      state,
      "SELECT day, SUM(rcpts) FROM sent WHERE server = ?1 AND day < ?2"
      " GROUP BY day ORDER BY day",
      "ss", server, today);

  while (stmt != NULL && sqlite3_step (stmt) == SQLITE_ROW)
    {
      RmSendDay d;

      d.day = day_number ((const char *) sqlite3_column_text (stmt, 0));
      d.rcpts = (guint64) sqlite3_column_int64 (stmt, 1);
      if (d.day != 0)
        g_array_append_val (days, d);
    }
  done (stmt);
  return days;
}

static guint64
cap_of (const RmRampParams *p)
{
  guint64 cap = 0;

  if (p->schedule == NULL || p->schedule_len == 0)
    return p->cap;
  for (size_t i = 0; i < p->schedule_len; i++)
    cap = MAX (cap, p->schedule[i]);
  return cap;
}

/* Sent and reserved recipients of server since ts (all reservations). */
static gint64
used_since (RmState *state, const char *server, gint64 ts)
{
  return query_int (state,
                    "SELECT IFNULL((SELECT SUM(rcpts) FROM sent"
                    " WHERE server = ?1 AND ts > ?2), 0)"
                    " + IFNULL((SELECT SUM(rcpts) FROM reserved"
                    " WHERE server = ?1), 0)",
                    "si", server, ts);
}

/* The time of the oldest send or reservation of server after ts; 0 if
 * none. */
static gint64
oldest_since (RmState *state, const char *server, gint64 ts)
{
  return query_int (state,
                    "SELECT MIN(t) FROM ("
                    " SELECT MIN(ts) AS t FROM sent"
                    " WHERE server = ?1 AND ts > ?2"
                    " UNION ALL SELECT MIN(ts) FROM reserved"
                    " WHERE server = ?1)",
                    "si", server, ts);
}

/* Narrows out->left to limit - used, noting when it frees up (frees 0:
 * nothing sent yet in the window, only reservations: soon). */
static void
apply_limit (RmAllowance *out, gint64 limit, gint64 used, gint64 frees,
             const char *reason)
{
  gint64 left = MAX (limit - used, 0);

  if (frees < 86400 * 2)
    frees = g_get_real_time () / G_USEC_PER_SEC + 60;
  if ((guint64) left < out->left)
    out->left = (guint64) left;
  if (left == 0)
    {
      out->next_window = MAX (out->next_window, frees);
      out->reason = reason;
    }
}

gboolean
rm_state_allowance (RmState *state, const RmQuotaSpec *spec, gint64 now,
                    GTimeZone *tz, RmAllowance *out, GError **error)
{
  g_autofree char *today = day_text (now, tz);
  const char *server = spec->server;
  gint64 oldest;

  memset (out, 0, sizeof *out);
  out->left = G_MAXUINT64;
  /* A reservation is a send about to happen, for the gap too. */
  out->last_send = query_int (state,
                              "SELECT MAX(IFNULL((SELECT MAX(ts) FROM sent"
                              " WHERE server = ?1), 0),"
                              " IFNULL((SELECT MAX(ts) FROM reserved"
                              " WHERE server = ?1), 0))",
                              "s", server);
  if (spec->warmup != NULL)
    {
      g_autoptr (GArray) days = history (state, server, today);

      out->limited = TRUE;
      out->allowance = spec->warmup->allowance (
          &spec->params, (const RmSendDay *) days->data, days->len,
          day_number (today), &out->ramp_day);
      out->used = (guint64) query_int (
          state,
          "SELECT IFNULL((SELECT SUM(rcpts) FROM sent"
          " WHERE server = ?1 AND day = ?2), 0)"
          " + IFNULL((SELECT SUM(rcpts) FROM reserved"
          " WHERE server = ?1 AND day = ?2), 0)",
          "ss", server, today);
      apply_limit (out, (gint64) out->allowance, (gint64) out->used,
                   next_midnight (now, tz), "today's allowance is used up");
      oldest = oldest_since (state, server, now - 86400);
      apply_limit (out, (gint64) cap_of (&spec->params),
                   used_since (state, server, now - 86400), oldest + 86400,
                   "its cap is used up in the last 24 hours");
      if (spec->hourly_share > 0)
        {
          oldest = oldest_since (state, server, now - 3600);
          apply_limit (
              out,
              (gint64) ceil (spec->hourly_share * (double) out->allowance),
              used_since (state, server, now - 3600), oldest + 3600,
              "its hourly share is used up");
        }
    }
  if (spec->min_gap > 0 && out->last_send + spec->min_gap > now)
    apply_limit (out, 0, 0, out->last_send + spec->min_gap,
                 "it waits the minimum gap between messages");
  if (spec->min_gap > 0 || spec->warmup != NULL)
    out->limited = TRUE;
  return TRUE;
}

static gboolean
pick_server (RmState *state, const RmQuotaSpec *specs, guint n_specs,
             const RmSelectorOps *selector, GRand *rnd, gint64 now,
             GTimeZone *tz, guint *chosen, guint64 *left, gint64 *next_window,
             GError **error)
{
  g_autofree char *today = day_text (now, tz);
  g_autofree RmCandidate *cands = g_new0 (RmCandidate, n_specs);
  g_autofree guint *index = g_new0 (guint, n_specs);
  g_autofree guint64 *lefts = g_new0 (guint64, n_specs);
  gint64 soonest = G_MAXINT64;
  guint n = 0;
  size_t pick;

  for (guint i = 0; i < n_specs; i++)
    {
      RmAllowance a;

      if (!rm_state_allowance (state, &specs[i], now, tz, &a, error))
        return FALSE;
      if (a.left == 0)
        {
          soonest = MIN (soonest, a.next_window);
          continue;
        }
      cands[n].name = specs[i].server;
      cands[n].today = read_count (state, today, specs[i].server);
      lefts[n] = a.left;
      index[n++] = i;
    }
  if (n == 0)
    {
      if (next_window != NULL)
        *next_window = soonest;
      *left = 0;
      return TRUE;
    }
  pick = selector->choose (cands, n, rnd);
  if (pick >= n)
    pick = 0;
  if (!add_pick (state, today, specs[index[pick]].server, error))
    return FALSE;
  *chosen = index[pick];
  *left = lefts[pick];
  return TRUE;
}

gboolean
rm_state_reserve (RmState *state, const RmQuotaSpec *specs, guint n_specs,
                  const RmSelectorOps *selector, GRand *rnd, gint64 now,
                  GTimeZone *tz, guint want, guint *chosen, guint *granted,
                  gint64 *reservation, gint64 *next_window, GError **error)
{
  g_autofree char *today = day_text (now, tz);
  guint64 left = 0;
  sqlite3_stmt *stmt;
  int rc;

  *granted = 0;
  *reservation = 0;
  if (state->in_batch && state->batch_lost)
    {
      g_set_error_literal (error, RM_ERROR, RM_ERROR_TEMPFAIL,
                           "state database: the round's transaction was "
                           "rolled back");
      return FALSE;
    }
  if (!exec_sql (state,
                 state->in_batch ? "SAVEPOINT reserve" : "BEGIN IMMEDIATE",
                 error))
    return FALSE;
  /* Once per batch: the batch's own reservations are this process's. */
  if (!state->in_batch || !state->reaped)
    reap_reservations (state);
  state->reaped = state->in_batch;
  if (!pick_server (state, specs, n_specs, selector, rnd, now, tz, chosen,
                    &left, next_window, error))
    goto fail;
  if (left == 0)
    return exec_sql (state, state->in_batch ? "RELEASE reserve" : "COMMIT",
                     error);

  *granted = (guint) MIN ((guint64) want, left);
  if (specs[*chosen].max_rcpts > 0)
    *granted = MIN (*granted, specs[*chosen].max_rcpts);
  stmt = prepare (state,
                  "INSERT INTO reserved (server, ts, day, rcpts, pid)"
                  " VALUES (?1, ?2, ?3, ?4, ?5)",
                  "sisii", specs[*chosen].server, now, today,
                  (gint64) *granted, (gint64) getpid ());
  rc = stmt ? sqlite3_step (stmt) : SQLITE_ERROR;
  done (stmt);
  if (rc != SQLITE_DONE)
    {
      db_fail (state, "reserve", error);
      goto fail;
    }
  *reservation = sqlite3_last_insert_rowid (state->db);
  if (exec_sql (state, state->in_batch ? "RELEASE reserve" : "COMMIT", error))
    return TRUE;

fail:
  /* After some errors (a full disk, I/O) SQLite has rolled back the whole
   * transaction already: then the batch is lost, and no later SAVEPOINT
   * may commit on its own. */
  if (state->in_batch && sqlite3_get_autocommit (state->db))
    state->batch_lost = TRUE;
  else
    sqlite3_exec (state->db,
                  state->in_batch ? "ROLLBACK TO reserve; RELEASE reserve"
                                  : "ROLLBACK",
                  NULL, NULL, NULL);
  *granted = 0;
  *reservation = 0;
  return FALSE;
}

void
rm_state_batch_begin (RmState *state)
{
  if (!state->in_batch)
    state->in_batch = exec_sql (state, "BEGIN IMMEDIATE", NULL);
  state->reaped = FALSE;
  state->batch_lost = FALSE;
}

gboolean
rm_state_batch_end (RmState *state, GError **error)
{
  if (!state->in_batch)
    return TRUE;
  state->in_batch = FALSE;
  if (state->batch_lost)
    {
      g_set_error_literal (error, RM_ERROR, RM_ERROR_TEMPFAIL,
                           "state database: the round's transaction was "
                           "rolled back");
      return FALSE;
    }
  if (exec_sql (state, "COMMIT", error))
    return TRUE;
  sqlite3_exec (state->db, "ROLLBACK", NULL, NULL, NULL);
  return FALSE;
}

/* Without a disk sync of its own (synchronous=NORMAL for this one
 * transaction): the mark must survive the process (a SIGKILL), which the
 * WAL in the page cache does; the settle that follows syncs it with its
 * own. Only a power loss in the middle of a send loses it, and then the
 * reservation is released as if nothing had gone out. */
void
rm_state_mark_sending (RmState *state, gint64 reservation)
{
  sqlite3_stmt *stmt = prepare (state,
                                "UPDATE reserved SET sending = 1"
                                " WHERE id = ?1",
                                "i", reservation);

  exec_sql (state, "PRAGMA synchronous=NORMAL", NULL);
  if (stmt != NULL)
    sqlite3_step (stmt);
  done (stmt);
  exec_sql (state, "PRAGMA synchronous=FULL", NULL);
}

gboolean
rm_state_settle (RmState *state, const RmSettle *settles, guint n,
                 GTimeZone *tz, GError **error)
{
  gboolean ok = TRUE;
  guint live = 0;

  for (guint i = 0; i < n; i++)
    live += settles[i].reservation != 0;
  if (live == 0)
    return TRUE;
  if (!exec_sql (state, "BEGIN IMMEDIATE", error))
    return FALSE;
  for (guint i = 0; ok && i < n; i++)
    {
      const RmSettle *s = &settles[i];
      sqlite3_stmt *stmt;

      if (s->reservation == 0)
        continue;
      if (s->used > 0)
        {
          g_autofree char *day = day_text (s->ts, tz);

          stmt = prepare (state,
                          "INSERT INTO sent (server, ts, day, rcpts)"
                          " SELECT server, ?2, ?3, ?4 FROM reserved"
                          " WHERE id = ?1",
                          "iisi", s->reservation, s->ts, day,
                          (gint64) s->used);
          ok = stmt != NULL && sqlite3_step (stmt) == SQLITE_DONE;
          done (stmt);
        }
      stmt = prepare (state, "DELETE FROM reserved WHERE id = ?1", "i",
                      s->reservation);
      ok = ok && stmt != NULL && sqlite3_step (stmt) == SQLITE_DONE;
      done (stmt);
    }
  if (!ok)
    {
      db_fail (state, "settle", error);
      sqlite3_exec (state->db, "ROLLBACK", NULL, NULL, NULL);
      return FALSE;
    }
  if (exec_sql (state, "COMMIT", error))
    return TRUE;
  sqlite3_exec (state->db, "ROLLBACK", NULL, NULL, NULL);
  return FALSE;
}

gboolean
rm_state_server_hold (RmState *state, const char *server, gint64 until,
                      const char *reason, GError **error)
{
  sqlite3_stmt *stmt = prepare (state,
                                "INSERT OR REPLACE INTO backoff"
                                " (server, failures, until, reason)"
                                " VALUES (?1, 1, ?2, ?3)",
                                "sis", server, until, reason);
  int rc = stmt ? sqlite3_step (stmt) : SQLITE_ERROR;

  done (stmt);
  if (rc != SQLITE_DONE)
    return db_fail (state, "hold", error);
  return TRUE;
}

char *
rm_state_backoff_reason (RmState *state, const char *server)
{
  sqlite3_stmt *stmt = prepare (state,
                                "SELECT reason FROM backoff"
                                " WHERE server = ?1",
                                "s", server);
  char *reason = NULL;

  if (stmt != NULL && sqlite3_step (stmt) == SQLITE_ROW
      && sqlite3_column_text (stmt, 0) != NULL)
    reason = g_strdup ((const char *) sqlite3_column_text (stmt, 0));
  done (stmt);
  return reason;
}

gint64
rm_state_next_midnight (gint64 now, GTimeZone *tz)
{
  return next_midnight (now, tz);
}
