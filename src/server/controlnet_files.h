/* controlnet_files.h: the ControlNets under --controlnet-dir that requests
 * name: .safetensors files and diffusers folders (config.json beside the
 * weights), with sd-webui-controlnet's names for them ("name [hash]").
 *
 * As for checkpoints (model_catalog.h), a name from a request never becomes
 * a path by itself: it is matched against the entries found by walking the
 * folder, every real path (symlinks resolved) checked to stay inside it.
 * Pickle files (.pth, .ckpt, .pt, .bin), which is how many ControlNets are
 * shared, are never loaded: they must be converted to .safetensors. */
#ifndef SDW_SERVER_CONTROLNET_FILES_H
#define SDW_SERVER_CONTROLNET_FILES_H
#include "sdw.h"
#include <limits.h>

typedef struct {
    char name[512];          /* relative to the folder: "sd15/control_canny.safetensors", "cn-folder" */
    char stem[512];          /* sd-webui-controlnet's model name: the file name without extension (a folder's name) */
    char title[528];         /* its model_list entry: "stem [hash]" (a folder: the stem) */
    char hash[16];           /* A1111's short model hash (sdw_infotext_short_hash), "" for a folder */
    char path[PATH_MAX];     /* real path */
    bool diffusers;
    sdw_family family;       /* after a probe (sdw_cn_list with probe, sdw_cn_resolve) */
} sdw_cn_entry;

/* The candidates under dir (3 levels deep at most), sorted by name. With
 * probe, only those that probe as ControlNets (headers only), with their
 * family and hash. *out is malloc'd (free it); n may be 0. */
sdw_status sdw_cn_list(const char *dir, bool probe, sdw_cn_entry **out, int *n);
/* The entry a request names: its name, the name without ".safetensors",
 * its stem or title; a " [hash]" suffix is allowed and not compared (a
 * client may hold an older hash). Probed: a file that is not a ControlNet
 * fails, as do an unknown name, a pickle file and a path outside dir; each
 * message names the name. */
sdw_status sdw_cn_resolve(const char *dir, const char *name, sdw_cn_entry *out);
#endif
