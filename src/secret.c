/* Server passwords; see secret.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"
#include "secret.h"

#define SECRET_MAX 4096

/* The first line of text, without its line end, as a new string. */
static char *
first_line (const char *text, gsize len)
{
  gsize n = 0;

  while (n < len && text[n] != '\n' && text[n] != '\r' && text[n] != '\0')
    n++;
  return g_strndup (text, n);
}

static char *
read_file (const RmServerConf *server, GError **error)
{
  const char *path = server->password_file;
  char buf[SECRET_MAX];
  struct stat st;
  ssize_t n;
  char *secret;
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

  if (fd < 0)
    {
      rm_error_set_errno (error, errno, RM_ERROR_CONFIG,
                          "[server %s] password_file %s", server->name, path);
      return NULL;
    }
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode)
      || (st.st_mode & (S_IROTH | S_IWOTH)) != 0)
    {
      close (fd);
      g_set_error (error, RM_ERROR, RM_ERROR_CONFIG,
                   "[server %s] password_file %s must be a regular file "
                   "that others cannot read or write (chmod o-rw)",
                   server->name, path);
      return NULL;
    }
  do
    n = read (fd, buf, sizeof buf);
  while (n < 0 && errno == EINTR);
  close (fd);
  if (n < 0)
    {
      rm_error_set_errno (error, errno, RM_ERROR_CONFIG,
                          "[server %s] read password_file %s", server->name,
                          path);
      return NULL;
    }
  secret = first_line (buf, (gsize) n);
  memset (buf, 0, sizeof buf);
  return secret;
}

static char *
run_command (const RmServerConf *server, GError **error)
{
  const char *argv[] = { "/bin/sh", "-c", server->password_command, NULL };
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  g_autoptr (GError) local = NULL;
  char *secret;
  int status = 0;

  if (!g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_STDIN_FROM_DEV_NULL,
                     NULL, NULL, &out, &err, &status, &local)
      || !g_spawn_check_wait_status (status, &local))
    {
      g_set_error (error, RM_ERROR, RM_ERROR_CONFIG,
                   "[server %s] password_command failed: %s", server->name,
                   local->message);
      return NULL;
    }
  secret = first_line (out, strlen (out));
  memset (out, 0, strlen (out));
  return secret;
}

char *
rm_secret_read (const RmServerConf *server, GError **error)
{
  char *secret;

  if (server->user == NULL)
    return NULL;
  secret = server->password_file != NULL ? read_file (server, error)
                                         : run_command (server, error);
  if (secret != NULL && *secret == '\0')
    {
      rm_secret_free (secret);
      g_set_error (error, RM_ERROR, RM_ERROR_CONFIG,
                   "[server %s] the password is empty", server->name);
      return NULL;
    }
  return secret;
}

void
rm_secret_free (char *secret)
{
  if (secret == NULL)
    return;
  memset (secret, 0, strlen (secret));
  g_free (secret);
}
