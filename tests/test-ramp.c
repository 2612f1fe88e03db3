/* Unit tests for the ramp warmup plugin's allowance function. The plugin
 * is compiled into this program, so its descriptor is reached through the
 * same symbol rampmail loads. */
#include "config.h"

#include <math.h>

#include <rampmail/plugin.h>

extern const RmPluginInfo rampmail_plugin;

static const RmWarmupOps *
warmup (void)
{
  g_assert_cmpuint (rampmail_plugin.abi, ==, RM_PLUGIN_ABI);
  g_assert_cmpint (rampmail_plugin.kind, ==, RM_PLUGIN_WARMUP);
  g_assert_cmpstr (rampmail_plugin.name, ==, "ramp");
  g_assert_nonnull (rampmail_plugin.ops);
  return rampmail_plugin.ops;
}

/* The defaults of the configuration: start 20, growth 1.3, cap 500,
 * half of a day's allowance makes a ramp day, 7 quiet days restart. */
static RmRampParams
defaults (void)
{
  RmRampParams p = { 0 };

  p.schedule = NULL;
  p.schedule_len = 0;
  p.start = 20;
  p.growth = 1.3;
  p.cap = 500;
  p.min_share = 0.5;
  p.restart_after = 7;
  return p;
}

/* A day number as rampmail passes it: GDate's Julian day. */
static guint32
julian (int year, int month, int day)
{
  g_autoptr (GDate) d = g_date_new_dmy ((GDateDay) day, (GDateMonth) month,
                                        (GDateYear) year);

  return g_date_get_julian (d);
}

/* A sending history that grows day by day. */
typedef struct {
  GArray *days; /* RmSendDay, oldest first */
} History;

static History *
history_new (void)
{
  History *h = g_new0 (History, 1);

  h->days = g_array_new (FALSE, FALSE, sizeof (RmSendDay));
  return h;
}

static void
history_free (History *h)
{
  g_array_unref (h->days);
  g_free (h);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (History, history_free)

static void
history_add (History *h, guint32 day, guint64 rcpts)
{
  RmSendDay d = { day, rcpts };

  g_array_append_val (h->days, d);
}

static guint64
allowance_on (const RmRampParams *p, const History *h, guint32 today,
              guint *ramp_day)
{
  guint ramp = 0;
  guint64 a = warmup ()->allowance (p, (const RmSendDay *) h->days->data,
                                    h->days->len, today, &ramp);

  if (ramp_day != NULL)
    *ramp_day = ramp;
  return a;
}

/* round(start * growth^(d-1)), half away from zero, capped. */
static guint64
expected_growth (guint start, double growth, guint cap, guint d)
{
  double v = (double) start * pow (growth, (double) d - 1.0);

  if (v >= (double) cap)
    return cap;
  return (guint64) llround (v);
}

/* ---- the default schedule ------------------------------------------------ */

static void
test_default_first_days (void)
{
  /* round(20 * 1.3^(d-1)) up to 500; day 7 is 96.536..., so 97 */
  static const guint64 table[] = { 20,  26,  34,  44,  57,  74,  97, 125,
                                   163, 212, 276, 358, 466, 500, 500 };
  RmRampParams p = defaults ();
  g_autoptr (History) h = history_new ();
  guint32 first = julian (2027, 1, 10);

  for (guint d = 1; d <= G_N_ELEMENTS (table); d++)
    {
      guint ramp = 0;
      guint64 a = allowance_on (&p, h, first + d - 1, &ramp);

      g_test_message ("day %u: allowance %" G_GUINT64_FORMAT, d, a);
      g_assert_cmpuint (ramp, ==, d);
      g_assert_cmpuint (a, ==, table[d - 1]);
      g_assert_cmpuint (a, ==, expected_growth (20, 1.3, 500, d));
      /* the server sends its whole allowance that day */
      history_add (h, first + d - 1, a);
    }
}

static void
test_default_holds_at_cap (void)
{
  RmRampParams p = defaults ();
  g_autoptr (History) h = history_new ();
  guint32 first = julian (2027, 1, 10);

  for (guint d = 1; d <= 40; d++)
    {
      guint ramp = 0;
      guint64 a = allowance_on (&p, h, first + d - 1, &ramp);

      g_assert_cmpuint (ramp, ==, d);
      g_assert_cmpuint (a, ==, expected_growth (20, 1.3, 500, d));
      if (d >= 14)
        g_assert_cmpuint (a, ==, 500);
      g_assert_cmpuint (a, <=, 500);
      history_add (h, first + d - 1, a);
    }
}

static void
test_first_day_without_history (void)
{
  RmRampParams p = defaults ();
  g_autoptr (History) h = history_new ();
  guint ramp = 0;

  g_assert_cmpuint (allowance_on (&p, h, julian (2027, 3, 28), &ramp), ==,
                    20);
  g_assert_cmpuint (ramp, ==, 1);
}

/* ---- an explicit schedule -------------------------------------------------- */

static void
test_explicit_schedule (void)
{
  static const guint schedule[] = { 20, 40, 80 };
  static const guint64 want[] = { 20, 40, 80, 80, 80, 80, 80, 80, 80, 80 };
  RmRampParams p = defaults ();
  g_autoptr (History) h = history_new ();
  guint32 first = julian (2027, 2, 1);

  p.schedule = schedule;
  p.schedule_len = G_N_ELEMENTS (schedule);
  /* start/growth/cap are ignored with a schedule */
  p.start = 7;
  p.growth = 3.0;
  p.cap = 10;
  for (guint d = 1; d <= G_N_ELEMENTS (want); d++)
    {
      guint ramp = 0;
      guint64 a = allowance_on (&p, h, first + d - 1, &ramp);

      g_assert_cmpuint (ramp, ==, d);
      g_assert_cmpuint (a, ==, want[d - 1]);
      history_add (h, first + d - 1, a);
    }
}

static void
test_schedule_of_one (void)
{
  static const guint schedule[] = { 10 };
  RmRampParams p = defaults ();
  g_autoptr (History) h = history_new ();
  guint32 first = julian (2027, 2, 1);

  p.schedule = schedule;
  p.schedule_len = 1;
  for (guint d = 1; d <= 20; d++)
    {
      g_assert_cmpuint (allowance_on (&p, h, first + d - 1, NULL), ==, 10);
      history_add (h, first + d - 1, 10);
    }
}

/* ---- ramp days need min_share -------------------------------------------- */

static void
test_low_volume_stays_on_day_one (void)
{
  RmRampParams p = defaults ();
  g_autoptr (History) h = history_new ();
  guint32 first = julian (2027, 1, 1);

  for (guint d = 1; d <= 30; d++)
    {
      guint ramp = 0;

      g_assert_cmpuint (allowance_on (&p, h, first + d - 1, &ramp), ==, 20);
      g_assert_cmpuint (ramp, ==, 1);
      history_add (h, first + d - 1, 5);
    }
  /* day 31, after a month of 5 a day: still day 1 */
  {
    guint ramp = 0;

    g_assert_cmpuint (allowance_on (&p, h, first + 30, &ramp), ==, 20);
    g_assert_cmpuint (ramp, ==, 1);
  }
}

static void
test_min_share_threshold (void)
{
  RmRampParams p = defaults ();
  guint32 first = julian (2027, 1, 1);

  /* 9 of 20 is under half: no ramp day */
  {
    g_autoptr (History) h = history_new ();
    guint ramp = 0;

    history_add (h, first, 9);
    g_assert_cmpuint (allowance_on (&p, h, first + 1, &ramp), ==, 20);
    g_assert_cmpuint (ramp, ==, 1);
  }
  /* exactly half counts */
  {
    g_autoptr (History) h = history_new ();
    guint ramp = 0;

    history_add (h, first, 10);
    g_assert_cmpuint (allowance_on (&p, h, first + 1, &ramp), ==, 26);
    g_assert_cmpuint (ramp, ==, 2);
  }
  /* day 2 allows 26: 13 is half, 12 is not */
  {
    g_autoptr (History) h = history_new ();
    guint ramp = 0;

    history_add (h, first, 20);
    history_add (h, first + 1, 12);
    g_assert_cmpuint (allowance_on (&p, h, first + 2, &ramp), ==, 26);
    g_assert_cmpuint (ramp, ==, 2);
    g_array_index (h->days, RmSendDay, 1).rcpts = 13;
    g_assert_cmpuint (allowance_on (&p, h, first + 2, &ramp), ==, 34);
    g_assert_cmpuint (ramp, ==, 3);
  }
  /* a configurable share: 0.9 of 20 is 18 */
  {
    g_autoptr (History) h = history_new ();
    guint ramp = 0;

    p.min_share = 0.9;
    history_add (h, first, 17);
    g_assert_cmpuint (allowance_on (&p, h, first + 1, &ramp), ==, 20);
    g_assert_cmpuint (ramp, ==, 1);
    g_array_index (h->days, RmSendDay, 0).rcpts = 18;
    g_assert_cmpuint (allowance_on (&p, h, first + 1, &ramp), ==, 26);
    g_assert_cmpuint (ramp, ==, 2);
  }
}

/* Low days in between do not move the ramp, full days after them do. */
static void
test_low_days_pause_the_ramp (void)
{
  RmRampParams p = defaults ();
  g_autoptr (History) h = history_new ();
  guint32 day = julian (2027, 1, 1);
  guint ramp = 0;

  history_add (h, day++, 20); /* day 1 full */
  history_add (h, day++, 3);  /* day 2 low */
  history_add (h, day++, 3);  /* still day 2, low */
  history_add (h, day++, 26); /* day 2 full */
  g_assert_cmpuint (allowance_on (&p, h, day, &ramp), ==, 34);
  g_assert_cmpuint (ramp, ==, 3);
}

/* ---- restarts -------------------------------------------------------------- */

/* A server ramped to day 5 (57 today), then quiet for gap days. */
static guint
ramp_after_gap (guint gap, guint64 *allowance)
{
  RmRampParams p = defaults ();
  g_autoptr (History) h = history_new ();
  guint32 day = julian (2027, 1, 1);
  guint ramp = 0;

  for (guint d = 1; d <= 4; d++)
    {
      guint64 a = allowance_on (&p, h, day, NULL);

      history_add (h, day++, a);
    }
  g_assert_cmpuint (allowance_on (&p, h, day, &ramp), ==, 57);
  g_assert_cmpuint (ramp, ==, 5);
  /* day is the day after the last send; gap quiet days, then today */
  *allowance = allowance_on (&p, h, day + gap, &ramp);
  return ramp;
}

static void
test_restart_after_pause (void)
{
  guint64 a = 0;

  g_assert_cmpuint (ramp_after_gap (7, &a), ==, 1);
  g_assert_cmpuint (a, ==, 20);
  g_assert_cmpuint (ramp_after_gap (30, &a), ==, 1);
  g_assert_cmpuint (a, ==, 20);
}

static void
test_no_restart_after_shorter_pause (void)
{
  guint64 a = 0;

  g_assert_cmpuint (ramp_after_gap (6, &a), ==, 5);
  g_assert_cmpuint (a, ==, 57);
  g_assert_cmpuint (ramp_after_gap (1, &a), ==, 5);
  g_assert_cmpuint (a, ==, 57);
  g_assert_cmpuint (ramp_after_gap (0, &a), ==, 5);
  g_assert_cmpuint (a, ==, 57);
}

/* A pause inside the history restarts the ramp there; the days after it
 * ramp up again from day 1. */
static void
test_restart_inside_history (void)
{
  RmRampParams p = defaults ();
  g_autoptr (History) h = history_new ();
  guint32 day = julian (2027, 5, 1);
  guint ramp = 0;

  for (guint d = 1; d <= 10; d++)
    {
      guint64 a = allowance_on (&p, h, day, NULL);

      history_add (h, day++, a);
    }
  g_assert_cmpuint (allowance_on (&p, h, day, &ramp), ==, 276);
  g_assert_cmpuint (ramp, ==, 11);
  day += 7;                   /* 7 quiet days */
  history_add (h, day++, 20); /* restarted: day 1, full */
  history_add (h, day++, 26); /* day 2, full */
  g_assert_cmpuint (allowance_on (&p, h, day, &ramp), ==, 34);
  g_assert_cmpuint (ramp, ==, 3);
  /* with only 6 quiet days it would have gone on from day 11 */
  {
    g_autoptr (History) h2 = history_new ();
    guint32 d2 = julian (2027, 5, 1);

    for (guint d = 1; d <= 10; d++)
      {
        guint64 a = allowance_on (&p, h2, d2, NULL);

        history_add (h2, d2++, a);
      }
    d2 += 6;
    history_add (h2, d2++, 276);
    g_assert_cmpuint (allowance_on (&p, h2, d2, &ramp), ==, 358);
    g_assert_cmpuint (ramp, ==, 12);
  }
}

static void
test_restart_after_configurable (void)
{
  RmRampParams p = defaults ();
  g_autoptr (History) h = history_new ();
  guint32 day = julian (2027, 1, 1);
  guint ramp = 0;

  p.restart_after = 2;
  history_add (h, day, 20);
  history_add (h, day + 1, 26);
  /* one quiet day: no restart */
  g_assert_cmpuint (allowance_on (&p, h, day + 3, &ramp), ==, 34);
  g_assert_cmpuint (ramp, ==, 3);
  /* two quiet days: restart */
  g_assert_cmpuint (allowance_on (&p, h, day + 4, &ramp), ==, 20);
  g_assert_cmpuint (ramp, ==, 1);
}

/* ---- growth and cap ---------------------------------------------------------- */

static void
test_growth_and_cap_configurable (void)
{
  RmRampParams p = defaults ();
  g_autoptr (History) h = history_new ();
  guint32 day = julian (2027, 1, 1);
  gboolean reached = FALSE;

  /* a Workspace account: cap 2000 */
  p.cap = 2000;
  for (guint d = 1; d <= 40; d++)
    {
      guint ramp = 0;
      guint64 a = allowance_on (&p, h, day, &ramp);

      g_assert_cmpuint (ramp, ==, d);
      g_assert_cmpuint (a, ==, expected_growth (20, 1.3, 2000, d));
      g_assert_cmpuint (a, <=, 2000);
      if (d == 14)
        g_assert_cmpuint (a, ==, 606); /* 605.75: past the default cap */
      if (a == 2000)
        reached = TRUE;
      history_add (h, day++, a);
    }
  g_assert_true (reached);

  /* start 2, growth 2, cap 16: 2, 4, 8, 16, 16, ... */
  {
    static const guint64 want[] = { 2, 4, 8, 16, 16, 16, 16 };
    g_autoptr (History) h2 = history_new ();
    guint32 d2 = julian (2027, 1, 1);

    p = defaults ();
    p.start = 2;
    p.growth = 2.0;
    p.cap = 16;
    for (guint d = 1; d <= G_N_ELEMENTS (want); d++)
      {
        guint64 a = allowance_on (&p, h2, d2, NULL);

        g_assert_cmpuint (a, ==, want[d - 1]);
        history_add (h2, d2++, a);
      }
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ramp/default/first-15-days", test_default_first_days);
  g_test_add_func ("/ramp/default/holds-at-cap", test_default_holds_at_cap);
  g_test_add_func ("/ramp/default/no-history",
                   test_first_day_without_history);
  g_test_add_func ("/ramp/schedule/explicit", test_explicit_schedule);
  g_test_add_func ("/ramp/schedule/one-entry", test_schedule_of_one);
  g_test_add_func ("/ramp/min-share/low-volume",
                   test_low_volume_stays_on_day_one);
  g_test_add_func ("/ramp/min-share/threshold", test_min_share_threshold);
  g_test_add_func ("/ramp/min-share/low-days-in-between",
                   test_low_days_pause_the_ramp);
  g_test_add_func ("/ramp/restart/after-pause", test_restart_after_pause);
  g_test_add_func ("/ramp/restart/shorter-pause",
                   test_no_restart_after_shorter_pause);
  g_test_add_func ("/ramp/restart/inside-history",
                   test_restart_inside_history);
  g_test_add_func ("/ramp/restart/configurable",
                   test_restart_after_configurable);
  g_test_add_func ("/ramp/growth-and-cap", test_growth_and_cap_configurable);
  return g_test_run ();
}
