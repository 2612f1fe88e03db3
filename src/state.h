/* The state store: per-server counters in an SQLite database under
 * state_dir, shared by every rampmail process on the host.
 *
 * Schema (state.sqlite):
 *   picks(server TEXT, day TEXT, count INTEGER, PRIMARY KEY(server, day))
 *     how many messages the selector gave each server on each day
 *     (day = YYYY-MM-DD in the configured time zone)
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
                               gboolean ok, gint64 now, guint min,
                               guint max, GError **error);

/* The delay before the next try after n failures in a row (n >= 1):
 * min, doubling with each failure, at most max. Used for servers and
 * for queue entries alike. */
gint64 rm_state_retry_delay (guint n, guint min, guint max);

/* Today's count for server (0 if none), for listings. */
gint64 rm_state_count (RmState *state, const char *day, const char *server);

#endif
