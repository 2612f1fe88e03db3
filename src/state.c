/* SQLite state store; see state.h for the schema. */
#include "config.h"

#include <errno.h>

#include <sqlite3.h>

#include "errors.h"
#include "state.h"

#define BUSY_TIMEOUT_MS 60000

struct RmState {
  sqlite3 *db;
};

static gboolean
db_fail (RmState *state, const char *what, GError **error)
{
  g_set_error (error, RM_ERROR, RM_ERROR_TEMPFAIL, "state database: %s: %s",
               what, sqlite3_errmsg (state->db));
  return FALSE;
}

static gboolean
exec_sql (RmState *state, const char *sql, GError **error)
{
  if (sqlite3_exec (state->db, sql, NULL, NULL, NULL) != SQLITE_OK)
    return db_fail (state, sql, error);
  return TRUE;
}

RmState *
rm_state_open (const char *state_dir, GError **error)
{
  g_autofree char *path = g_build_filename (state_dir, "state.sqlite", NULL);
  g_autoptr (RmState) state = g_new0 (RmState, 1);

  if (g_mkdir_with_parents (state_dir, 0750) < 0)
    {
      rm_error_set_errno (error, errno, RM_ERROR_CANTCREAT,
                          "state folder %s", state_dir);
      return NULL;
    }
  if (sqlite3_open_v2 (path, &state->db,
                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL)
      != SQLITE_OK)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_CANTCREAT, "open %s: %s", path,
                   state->db ? sqlite3_errmsg (state->db) : "out of memory");
      return NULL;
    }
  sqlite3_busy_timeout (state->db, BUSY_TIMEOUT_MS);
  if (!exec_sql (state, "PRAGMA journal_mode=WAL", error)
      || !exec_sql (state, "PRAGMA synchronous=FULL", error)
      || !exec_sql (state,
                    "CREATE TABLE IF NOT EXISTS picks ("
                    " server TEXT NOT NULL, day TEXT NOT NULL,"
                    " count INTEGER NOT NULL,"
                    " PRIMARY KEY (server, day))",
                    error)
      || !exec_sql (state,
                    "CREATE TABLE IF NOT EXISTS backoff ("
                    " server TEXT PRIMARY KEY, failures INTEGER NOT NULL,"
                    " until INTEGER NOT NULL)",
                    error))
    {
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
  sqlite3_close (state->db);
  g_free (state);
}

static gint64
read_count (RmState *state, const char *day, const char *server)
{
  sqlite3_stmt *stmt = NULL;
  gint64 count = 0;

  if (sqlite3_prepare_v2 (state->db,
                          "SELECT count FROM picks"
                          " WHERE server = ?1 AND day = ?2",
                          -1, &stmt, NULL)
      != SQLITE_OK)
    return 0;
  sqlite3_bind_text (stmt, 1, server, -1, SQLITE_STATIC);
  sqlite3_bind_text (stmt, 2, day, -1, SQLITE_STATIC);
  if (sqlite3_step (stmt) == SQLITE_ROW)
    count = sqlite3_column_int64 (stmt, 0);
  sqlite3_finalize (stmt);
  return count;
}

static gboolean
add_pick (RmState *state, const char *day, const char *server,
          GError **error)
{
  sqlite3_stmt *stmt = NULL;
  int rc;

  if (sqlite3_prepare_v2 (state->db,
                          "INSERT INTO picks (server, day, count)"
                          " VALUES (?1, ?2, 1) ON CONFLICT (server, day)"
                          " DO UPDATE SET count = count + 1",
                          -1, &stmt, NULL)
      != SQLITE_OK)
    return db_fail (state, "prepare", error);
  sqlite3_bind_text (stmt, 1, server, -1, SQLITE_STATIC);
  sqlite3_bind_text (stmt, 2, day, -1, SQLITE_STATIC);
  rc = sqlite3_step (stmt);
  sqlite3_finalize (stmt);
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

  if (sqlite3_prepare_v2 (state->db,
                          "SELECT until FROM backoff WHERE server = ?1", -1,
                          &stmt, NULL)
      != SQLITE_OK)
    return 0;
  sqlite3_bind_text (stmt, 1, server, -1, SQLITE_STATIC);
  if (sqlite3_step (stmt) == SQLITE_ROW)
    until = sqlite3_column_int64 (stmt, 0);
  sqlite3_finalize (stmt);
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
      if (sqlite3_prepare_v2 (state->db,
                              "DELETE FROM backoff WHERE server = ?1", -1,
                              &stmt, NULL)
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
      if (sqlite3_prepare_v2 (state->db,
                              "SELECT failures FROM backoff WHERE server = ?1",
                              -1, &stmt, NULL)
          == SQLITE_OK)
        {
          sqlite3_bind_text (stmt, 1, server, -1, SQLITE_STATIC);
          if (sqlite3_step (stmt) == SQLITE_ROW)
            failures = sqlite3_column_int64 (stmt, 0);
          sqlite3_finalize (stmt);
        }
      failures++;
      delay = rm_state_retry_delay ((guint) failures, min, max);
      if (sqlite3_prepare_v2 (state->db,
                              "INSERT OR REPLACE INTO backoff"
                              " (server, failures, until) VALUES (?1, ?2, ?3)",
                              -1, &stmt, NULL)
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
  sqlite3_finalize (stmt);
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
