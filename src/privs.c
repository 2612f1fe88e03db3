/* Dropping the setgid group; see privs.h. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "privs.h"

gboolean
rm_privs_elevated (void)
{
  return getegid () != getgid ();
}

static gboolean
root_only (const struct stat *st)
{
  return st->st_uid == 0 && (st->st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

gboolean
rm_privs_trusted_file (const char *path)
{
  g_autofree char *dir = g_path_get_dirname (path);
  struct stat st;

  if (lstat (path, &st) < 0 || !S_ISREG (st.st_mode) || !root_only (&st))
    return FALSE;
  return stat (dir, &st) == 0 && S_ISDIR (st.st_mode) && root_only (&st);
}

void
rm_privs_drop (void)
{
  gid_t gid = getgid ();
  gid_t r, e, s;

  if (setresgid (gid, gid, gid) < 0 || getresgid (&r, &e, &s) < 0 || r != gid
      || e != gid || s != gid)
    {
      fprintf (stderr, "rampmail: cannot drop the group privileges\n");
      abort ();
    }
}
