/* The aliases file: "name: address, address, ..." per line. */
#include "config.h"

#include <string.h>

#include "address.h"
#include "aliases.h"
#include "errors.h"

#define DEFAULT_NAME "default"

typedef struct {
  GPtrArray *targets; /* char *, mailboxes as written (maybe bare) */
  unsigned line;      /* where it was defined */
} Alias;

struct RmAliases {
  GHashTable *table; /* char *name -> Alias * */
};

static void
alias_free (gpointer data)
{
  Alias *alias = data;

  g_ptr_array_unref (alias->targets);
  g_free (alias);
}

static RmAliases *
aliases_new (void)
{
  RmAliases *aliases = g_new0 (RmAliases, 1);

  aliases->table = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                          alias_free);
  return aliases;
}

void
rm_aliases_free (RmAliases *aliases)
{
  if (aliases == NULL)
    return;
  g_hash_table_unref (aliases->table);
  g_free (aliases);
}

guint
rm_aliases_count (const RmAliases *aliases)
{
  return aliases == NULL ? 0 : g_hash_table_size (aliases->table);
}

/* A name is a bare local name that stands for itself: "root",
 * "web-master", "first.last"; no domain, brackets, quotes or comments. */
static gboolean
check_name (const char *name, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autofree char *parsed = NULL;

  if (*name == '\0')
    {
      g_set_error (error, RM_ERROR, RM_ERROR_CONFIG, "empty alias name");
      return FALSE;
    }
  parsed = rm_address_parse_arg (name, &local_error);
  if (parsed == NULL)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_CONFIG, "bad alias name: %s",
                   local_error->message);
      return FALSE;
    }
  if (strcmp (parsed, name) != 0 || rm_address_has_domain (parsed)
      || parsed[0] == '"')
    {
      g_set_error (error, RM_ERROR, RM_ERROR_CONFIG,
                   "bad alias name \"%s\": not a plain local name", name);
      return FALSE;
    }
  return TRUE;
}

/* One line that is neither blank nor a comment. */
static gboolean
parse_line (RmAliases *aliases, char *line, unsigned lineno, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GPtrArray) targets = NULL;
  char *colon = strchr (line, ':');
  char *name;
  Alias *alias;
  Alias *old;

  if (colon == NULL)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_CONFIG,
                   "expected \"name: address, ...\"");
      return FALSE;
    }
  *colon = '\0';
  name = g_strstrip (line);
  if (!check_name (name, error))
    return FALSE;

  old = g_hash_table_lookup (aliases->table, name);
  if (old != NULL)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_CONFIG,
                   "alias \"%s\" already defined on line %u", name,
                   old->line);
      return FALSE;
    }

  targets = g_ptr_array_new_with_free_func (g_free);
  if (!rm_address_parse_list (colon + 1, targets, &local_error))
    {
      g_set_error (error, RM_ERROR, RM_ERROR_CONFIG, "alias \"%s\": %s", name,
                   local_error->message);
      return FALSE;
    }
  if (targets->len == 0)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_CONFIG,
                   "alias \"%s\": no address", name);
      return FALSE;
    }

  alias = g_new0 (Alias, 1);
  alias->targets = g_steal_pointer (&targets);
  alias->line = lineno;
  g_hash_table_insert (aliases->table, g_strdup (name), alias);
  return TRUE;
}

RmAliases *
rm_aliases_load (const char *path, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (RmAliases) aliases = NULL;
  g_autofree char *contents = NULL;
  gsize length = 0;
  char *line;
  char *next_line;
  unsigned lineno = 0;

  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  aliases = aliases_new ();
  if (!g_file_get_contents (path, &contents, &length, &local_error))
    {
      RmErrorCode code = RM_ERROR_CONFIG;

      if (g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        return g_steal_pointer (&aliases);
      if (g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_ACCES)
          || g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_PERM))
        code = RM_ERROR_NOPERM;
      /* GLib's message already names the file */
      g_set_error (error, RM_ERROR, code, "%s", local_error->message);
      return NULL;
    }

  {
    const char *nul = memchr (contents, '\0', length);

    if (nul != NULL)
      {
        const char *q;

        lineno = 1;
        for (q = contents; q < nul; q++)
          lineno += *q == '\n';
        g_set_error (error, RM_ERROR, RM_ERROR_CONFIG,
                     "%s:%u: NUL byte in line", path, lineno);
        return NULL;
      }
  }

  /* contents is NUL-terminated and holds no other NUL */
  for (line = contents; line != NULL && line < contents + length;
       line = next_line)
    {
      g_autoptr (GError) line_error = NULL;
      char *p;

      lineno++;
      next_line = strchr (line, '\n');
      if (next_line != NULL)
        *next_line++ = '\0';

      p = line + strlen (line);
      if (p > line && p[-1] == '\r')
        p[-1] = '\0';
      p = line;
      while (*p == ' ' || *p == '\t')
        p++;
      if (*p == '\0' || *p == '#')
        continue;

      if (!parse_line (aliases, line, lineno, &line_error))
        {
          g_set_error (error, RM_ERROR, RM_ERROR_CONFIG, "%s:%u: %s", path,
                       lineno, line_error->message);
          return NULL;
        }
    }
  return g_steal_pointer (&aliases);
}

/* Appends mailbox to out, qualified with domain if it has none. */
static void
add_qualified (const char *mailbox, const char *domain, GPtrArray *out)
{
  if (rm_address_has_domain (mailbox) || domain == NULL || *domain == '\0')
    g_ptr_array_add (out, g_strdup (mailbox));
  else
    g_ptr_array_add (out, g_strconcat (mailbox, "@", domain, NULL));
}

void
rm_aliases_resolve (const RmAliases *aliases, const char *domain,
                    const char *mailbox, GPtrArray *out)
{
  const Alias *alias = NULL;
  guint i;

  g_return_if_fail (mailbox != NULL);
  g_return_if_fail (out != NULL);

  if (rm_address_has_domain (mailbox))
    {
      g_ptr_array_add (out, g_strdup (mailbox));
      return;
    }

  if (aliases != NULL)
    {
      alias = g_hash_table_lookup (aliases->table, mailbox);
      if (alias == NULL)
        alias = g_hash_table_lookup (aliases->table, DEFAULT_NAME);
    }
  if (alias == NULL)
    {
      add_qualified (mailbox, domain, out);
      return;
    }
  for (i = 0; i < alias->targets->len; i++)
    add_qualified (g_ptr_array_index (alias->targets, i), domain, out);
}
