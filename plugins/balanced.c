/* Selector "balanced": every candidate is equally likely over time, and
 * the split within a day is exact. It gives the message to a server with
 * the fewest messages today, and breaks ties at random so the order is
 * not predictable. A server added during the day starts from its own
 * count of zero and so takes the next messages until it has caught up
 * with the others' count for that day, not their history. */
#include <rampmail/plugin.h>

static size_t
balanced_choose (const RmCandidate *cands, size_t n, GRand *rnd)
{
  gint64 least = G_MAXINT64;
  size_t ties = 0;
  size_t pick = 0;

  for (size_t i = 0; i < n; i++)
    if (cands[i].today < least)
      least = cands[i].today;
  for (size_t i = 0; i < n; i++)
    if (cands[i].today == least)
      ties++;

  /* Uniform among the ties: skip a random number of them. */
  ties = (size_t) g_rand_int_range (rnd, 0, (gint32) ties);
  for (size_t i = 0; i < n; i++)
    if (cands[i].today == least && ties-- == 0)
      {
        pick = i;
        break;
      }
  return pick;
}

static const RmSelectorOps balanced_ops = {
  .choose = balanced_choose,
};

RM_PLUGIN_EXPORT const RmPluginInfo rampmail_plugin = {
  .abi = RM_PLUGIN_ABI,
  .kind = RM_PLUGIN_SELECTOR,
  .name = "balanced",
  .ops = &balanced_ops,
};
