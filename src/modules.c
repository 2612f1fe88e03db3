/* Plugin loading: one registry, looked up by kind and name. */
#include "config.h"

#include <ltdl.h>

#include "errors.h"
#include "modules.h"

typedef struct {
  RmPluginKind kind;
  char *name;
  const void *ops;
} Loaded;

static GPtrArray *loaded;

static const char *
kind_name (RmPluginKind kind)
{
  switch (kind)
    {
    case RM_PLUGIN_TRANSPORT:
      return "transport";
    case RM_PLUGIN_SELECTOR:
      return "selector";
    case RM_PLUGIN_WARMUP:
      return "warmup";
    }
  return "unknown";
}

static const void *
find_loaded (RmPluginKind kind, const char *name)
{
  for (guint i = 0; loaded != NULL && i < loaded->len; i++)
    {
      Loaded *l = loaded->pdata[i];

      if (l->kind == kind && g_strcmp0 (l->name, name) == 0)
        return l->ops;
    }
  return NULL;
}

static gboolean
check_info (const RmPluginInfo *info, RmPluginKind kind, const char *name,
            const char *path, GError **error)
{
  if (info->abi != RM_PLUGIN_ABI)
    g_set_error (error, RM_ERROR, RM_ERROR_CONFIG,
                 "plugin %s (%s) has interface version %u, rampmail needs %u",
                 name, path, info->abi, (unsigned) RM_PLUGIN_ABI);
  else if (info->kind != kind)
    g_set_error (error, RM_ERROR, RM_ERROR_CONFIG,
                 "plugin %s (%s) is a %s, not a %s", name, path,
                 kind_name (info->kind), kind_name (kind));
  else if (g_strcmp0 (info->name, name) != 0 || info->ops == NULL)
    g_set_error (error, RM_ERROR, RM_ERROR_CONFIG,
                 "plugin %s (%s) calls itself %s", name, path,
                 info->name ? info->name : "(nothing)");
  else
    return TRUE;
  return FALSE;
}

const void *
rm_modules_open (const char *dir, const char *name, const char *symbol,
                 const char *what, int code, char **path, GError **error)
{
  g_autofree char *file = g_build_filename (dir, name, NULL);
  lt_dlhandle handle;
  const void *address;

  if (lt_dlinit () != 0)
    {
      g_set_error (error, RM_ERROR, RM_ERROR_SOFTWARE, "libltdl: %s",
                   lt_dlerror ());
      return NULL;
    }
  handle = lt_dlopenext (file);
  if (handle == NULL)
    {
      g_set_error (error, RM_ERROR, code,
                   "%s cannot be loaded from %s(.la|.so): %s", what, file,
                   lt_dlerror ());
      return NULL;
    }
  address = lt_dlsym (handle, symbol);
  if (address == NULL)
    {
      g_set_error (error, RM_ERROR, code, "%s (%s) has no %s symbol", what,
                   file, symbol);
      lt_dlclose (handle);
      return NULL;
    }
  /* Never unloaded: GMime registers types with GObject, and the plugins'
   * tables are used until the process exits. */
  lt_dlmakeresident (handle);
  if (path != NULL)
    *path = g_steal_pointer (&file);
  return address;
}

const void *
rm_modules_load (const char *dir, RmPluginKind kind, const char *name,
                 GError **error)
{
  g_autofree char *path = NULL;
  g_autofree char *what = NULL;
  const void *ops = find_loaded (kind, name);
  const RmPluginInfo *info;
  Loaded *entry;

  if (ops != NULL)
    return ops;
  what = g_strdup_printf ("%s plugin %s", kind_name (kind), name);
  info = rm_modules_open (dir, name, RM_PLUGIN_SYMBOL, what, RM_ERROR_CONFIG,
                          &path, error);
  if (info == NULL || !check_info (info, kind, name, path, error))
    return NULL;

  if (loaded == NULL)
    loaded = g_ptr_array_new ();
  entry = g_new0 (Loaded, 1);
  entry->kind = kind;
  entry->name = g_strdup (name);
  entry->ops = info->ops;
  g_ptr_array_add (loaded, entry);
  return info->ops;
}
