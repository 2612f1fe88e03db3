/* Unit tests for the balanced selector and the state store. */
#include "config.h"

#include <rampmail/plugin.h>

#include "state.h"

extern const RmPluginInfo rampmail_plugin;

static const RmSelectorOps *
selector (void)
{
  g_assert_cmpuint (rampmail_plugin.abi, ==, RM_PLUGIN_ABI);
  g_assert_cmpint (rampmail_plugin.kind, ==, RM_PLUGIN_SELECTOR);
  g_assert_cmpstr (rampmail_plugin.name, ==, "balanced");
  return rampmail_plugin.ops;
}

static void
test_least_loaded (void)
{
  RmCandidate cands[] = { { "a", 5 }, { "b", 2 }, { "c", 9 } };
  g_autoptr (GRand) rnd = g_rand_new_with_seed (1);

  for (int i = 0; i < 50; i++)
    g_assert_cmpuint (selector ()->choose (cands, 3, rnd), ==, 1);
}

static void
test_ties_are_random (void)
{
  RmCandidate cands[] = { { "a", 0 }, { "b", 0 }, { "c", 0 }, { "d", 1 } };
  g_autoptr (GRand) rnd = g_rand_new_with_seed (42);
  guint hits[4] = { 0 };

  for (int i = 0; i < 3000; i++)
    hits[selector ()->choose (cands, 4, rnd)]++;
  g_assert_cmpuint (hits[3], ==, 0);
  for (int i = 0; i < 3; i++)
    {
      g_assert_cmpuint (hits[i], >, 850);
      g_assert_cmpuint (hits[i], <, 1150);
    }
}

static void
test_exact_split (void)
{
  g_autofree char *dir = g_dir_make_tmp ("rm-state-XXXXXX", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (RmState) state = rm_state_open (dir, &error);
  g_autoptr (GPtrArray) names = g_ptr_array_new ();
  g_autoptr (GRand) rnd = g_rand_new ();
  guint counts[3] = { 0 };

  g_assert_no_error (error);
  g_ptr_array_add (names, "one");
  g_ptr_array_add (names, "two");
  g_ptr_array_add (names, "three");
  for (int i = 0; i < 30; i++)
    {
      guint pick;

      g_assert_true (rm_state_choose (state, "2026-12-04", names, selector (),
                                      rnd, &pick, &error));
      counts[pick]++;
    }
  for (int i = 0; i < 3; i++)
    g_assert_cmpuint (counts[i], ==, 10);
  g_assert_cmpint (rm_state_count (state, "2026-12-04", "two"), ==, 10);
  /* a new day starts from zero for everyone */
  g_assert_cmpint (rm_state_count (state, "2026-12-05", "two"), ==, 0);

  /* a server added later catches up with today's counts, not history */
  g_ptr_array_add (names, "four");
  for (int i = 0; i < 10; i++)
    {
      guint pick;

      g_assert_true (rm_state_choose (state, "2026-12-04", names, selector (),
                                      rnd, &pick, &error));
      g_assert_cmpuint (pick, ==, 3);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/selector/least-loaded", test_least_loaded);
  g_test_add_func ("/selector/ties-are-random", test_ties_are_random);
  g_test_add_func ("/selector/exact-split", test_exact_split);
  return g_test_run ();
}
