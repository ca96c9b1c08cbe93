/* model_catalog.h: the checkpoints under --models-dir that jobs may switch
 * to: single .safetensors files and diffusers folders (a folder with
 * model_index.json), each probed (so LoRA and VAE files are left out), with
 * A1111's names for them.
 *
 * A name from a request never becomes a path by itself: it is matched
 * against this list, whose entries were found by walking the folder, with
 * every real path (symlinks resolved) checked to stay inside it. Pickle
 * checkpoints (.ckpt, .pt, .pth, .bin) are never loaded. */
#ifndef SDW_SERVER_MODEL_CATALOG_H
#define SDW_SERVER_MODEL_CATALOG_H
#include "sdw.h"
#include <limits.h>

typedef struct {
    char name[512];          /* path relative to the folder, e.g. "sd15/model.safetensors" */
    char path[PATH_MAX];     /* real path */
    char model_name[512];    /* A1111: name without extension, '/' -> '_' */
    char title[600];         /* A1111: "name [hash10]" (just name for a folder) */
    char sha256[65];         /* "" for a folder */
    char hash10[11];
    sdw_family family;
    bool diffusers;
} sdw_catalog_entry;

/* All checkpoints under dir (3 levels deep at most), sorted by name. *out is
 * malloc'd (free it); n may be 0. */
sdw_status sdw_catalog_list(const char *dir, sdw_catalog_entry **out, int *n);
/* Finds the entry a request names: its name, title (with or without the
 * hash), model_name, file name, or hash. Fails with a message (unknown name,
 * pickle file, path outside the folder). */
sdw_status sdw_catalog_resolve(const char *dir, const char *name, sdw_catalog_entry *out);
/* The A1111 names of a checkpoint given by path (the -m model): named
 * relative to dir when it lies inside it (dir may be NULL), else by its
 * file name. */
void sdw_catalog_describe(const char *dir, const char *path, sdw_catalog_entry *out);
/* True for the file names of pickle checkpoints. */
bool sdw_catalog_is_pickle(const char *name);
#endif
