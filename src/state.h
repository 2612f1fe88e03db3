/* The state store: per-server counters in an SQLite database under
 * state_dir, shared by every rampmail process on the host.
 *
 * Schema (state.sqlite):
 *   picks(server TEXT, day TEXT, count INTEGER, PRIMARY KEY(server, day))
 *     how many messages the selector gave each server on each day
 *     (day = YYYY-MM-DD in the configured time zone)
 *   sent(server TEXT, ts INTEGER, day TEXT, rcpts INTEGER)
 *     recipients each server sent (or may have sent: an unknown outcome
 *     counts), for the warmup allowance and the rolling 24-hour cap
 *   reserved(id INTEGER PRIMARY KEY, server, ts, day, rcpts, pid, sending)
 *     recipients a process has set aside on a server before sending; a
 *     row of a process that died is dropped, or counted as sent if the
 *     process had started sending (the outcome is unknown)
 *   backoff(server TEXT PRIMARY KEY, failures INTEGER, until INTEGER)
 *     a server that failed as a whole (no session, or every recipient
 *     deferred without a reply) is not tried again before until
 *     (seconds since the epoch); failures counts the failures in a row
 *
 * Every read-decide-write runs in one BEGIN IMMEDIATE transaction, so
 * concurrent processes see each other's choices and the split stays
 * exact. The interface is kept narrow so that another backend could hold
 * the same counters.
 */
#ifndef RM_STATE_H
#define RM_STATE_H

#include <glib.h>
#include <rampmail/plugin.h>

typedef struct RmState RmState;

/* Opens (creating when missing) state_dir/state.sqlite. */
RmState *rm_state_open (const char *state_dir, GError **error);
void rm_state_free (RmState *state);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RmState, rm_state_free)

/* In one transaction: reads today's count of each server in names, asks
 * selector to choose, adds one to the chosen server's count, and returns
 * its index in names. names must not be empty. */
gboolean rm_state_choose (RmState *state, const char *day, GPtrArray *names,
                          const RmSelectorOps *selector, GRand *rnd,
                          guint *chosen, GError **error);

/* Seconds since the epoch before which server should not be tried; 0 when
 * it is not backed off. */
gint64 rm_state_backoff_until (RmState *state, const char *server);

/* Records the outcome of a session with server at now: a success clears
 * its backoff; a failure backs it off for min * 2^(failures-1) seconds,
 * at most max. Returns the delay set (0 after a success). */
gint64 rm_state_server_result (RmState *state, const char *server,
                               gboolean ok, gint64 now, guint min, guint max,
                               GError **error);

/* Holds server back until until, for reason (shown by --status): a
 * rejected login, a provider's daily limit. */
gboolean rm_state_server_hold (RmState *state, const char *server,
                               gint64 until, const char *reason,
                               GError **error);

/* Why server is held or backed off, or NULL. */
char *rm_state_backoff_reason (RmState *state, const char *server);

/* The start of the next local day after now. */
gint64 rm_state_next_midnight (gint64 now, GTimeZone *tz);

/* The delay before the next try after n failures in a row (n >= 1):
 * min, doubling with each failure, at most max. Used for servers and
 * for queue entries alike. */
gint64 rm_state_retry_delay (guint n, guint min, guint max);

/* ---- quotas (warmup and pacing) ------------------------------------------ */

/* What limits one server. warmup NULL means no daily limit. */
typedef struct {
  const char *server;
  const RmWarmupOps *warmup;
  RmRampParams params;
  guint min_gap;       /* seconds between messages; 0: off */
  double hourly_share; /* 0: off */
  guint max_rcpts;     /* per message; 0: no limit */
} RmQuotaSpec;

/* What a server may send now. */
typedef struct {
  gboolean limited; /* FALSE: no warmup, no pacing */
  guint ramp_day;
  guint64 allowance;  /* today's */
  guint64 used;       /* today's, sent and reserved */
  guint64 left;       /* may send now; 0: must wait */
  gint64 last_send;   /* 0: never */
  gint64 next_window; /* with left == 0: when it may send again */
  const char *reason; /* with left == 0: why it waits */
} RmAllowance;

/* The allowance of spec's server at now (day boundaries in tz). */
gboolean rm_state_allowance (RmState *state, const RmQuotaSpec *spec,
                             gint64 now, GTimeZone *tz, RmAllowance *out,
                             GError **error);

/* In one transaction: the servers of specs with something left now are
 * offered to selector; the chosen one gets a reservation of
 * min(want, left) recipients. Sets *chosen (index in specs), *granted and
 * *reservation; *granted = 0 when no server has anything left (then
 * *next_window, if not NULL, says when the first may send again). */
gboolean rm_state_reserve (RmState *state, const RmQuotaSpec *specs,
                           guint n_specs, const RmSelectorOps *selector,
                           GRand *rnd, gint64 now, GTimeZone *tz, guint want,
                           guint *chosen, guint *granted, gint64 *reservation,
                           gint64 *next_window, GError **error);

/* Marks a reservation as being sent: from now on a crash counts it as
 * used. */
void rm_state_mark_sending (RmState *state, gint64 reservation);

/* The outcome of one reservation: used recipients (accepted, or outcome
 * unknown) are recorded as sent at ts; the rest of it is released. */
typedef struct {
  gint64 reservation; /* 0: none, skipped */
  guint used;
  gint64 ts;
} RmSettle;

/* Ends n reservations in one transaction (one disk sync). Until then they
 * count as reserved, so that other processes never see more room than
 * there is. */
gboolean rm_state_settle (RmState *state, const RmSettle *settles, guint n,
                          GTimeZone *tz, GError **error);

/* Makes the reservations up to rm_state_batch_end one transaction (one
 * disk sync); the database is locked for other writers meanwhile, so a
 * batch holds no network wait. If begin fails, each reservation is its
 * own transaction, as without a batch. */
void rm_state_batch_begin (RmState *state);
gboolean rm_state_batch_end (RmState *state, GError **error);

/* Today's count for server (0 if none), for listings. */
gint64 rm_state_count (RmState *state, const char *day, const char *server);

#endif
