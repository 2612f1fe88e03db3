/* Warmup "ramp": a fresh server sends a little on its first day and more
 * on each day it really sends, up to a cap it then holds.
 *
 * Ramp day 1 is the first day the server sends. A later day on which it
 * sent at least min_share of that day's allowance moves it one ramp day
 * on; a day on which it sent less leaves it where it was, so a server that
 * sends 5 mails a day for a month stays near day 1. restart_after days in
 * a row without sending put it back on day 1. The allowance of ramp day d
 * is schedule[d-1] (the last entry holds), or without a schedule
 * min(cap, round(start * growth^(d-1))).
 */
#include <math.h>

#include <rampmail/plugin.h>

static guint64
day_allowance (const RmRampParams *p, guint ramp_day)
{
  double value;

  if (p->schedule != NULL && p->schedule_len > 0)
    return p->schedule[MIN ((size_t) ramp_day, p->schedule_len) - 1];
  value = p->start * pow (p->growth, (double) ramp_day - 1.0);
  if (value >= (double) p->cap)
    return p->cap;
  return (guint64) MAX (llround (value), 1);
}

/* TRUE if the days between last and day (exclusive) hold restart_after or
 * more days without sending. */
static gboolean
paused (const RmRampParams *p, guint32 last, guint32 day)
{
  return day > last && day - last - 1 >= p->restart_after;
}

static guint64
ramp_allowance (const RmRampParams *p, const RmSendDay *history,
                size_t n_days, guint32 today, guint *ramp_day)
{
  guint ramp = 1;

  for (size_t i = 0; i < n_days; i++)
    {
      guint64 allowed;

      if (i > 0 && paused (p, history[i - 1].day, history[i].day))
        ramp = 1;
      allowed = day_allowance (p, ramp);
      if ((double) history[i].rcpts >= ceil (p->min_share * (double) allowed))
        ramp++;
    }
  if (n_days > 0 && paused (p, history[n_days - 1].day, today))
    ramp = 1;
  *ramp_day = ramp;
  return day_allowance (p, ramp);
}

static const RmWarmupOps ramp_ops = {
  .allowance = ramp_allowance,
};

RM_PLUGIN_EXPORT const RmPluginInfo rampmail_plugin = {
  .abi = RM_PLUGIN_ABI,
  .kind = RM_PLUGIN_WARMUP,
  .name = "ramp",
  .ops = &ramp_ops,
};
