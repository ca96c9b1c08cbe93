/* fullsize_kit.h: what test_fullsize_flux and test_fullsize_sd3 share: the
 * tools/fullsize tensor lists, writing a mini list to a file with the
 * fullsize tool's writer and checking every tensor read back against the
 * recipe, and the activation statistics a forward pass's taps collect.
 * Linked into those tests only (tests/CMakeLists.txt). */
#ifndef SDW_TEST_FULLSIZE_KIT_H
#define SDW_TEST_FULLSIZE_KIT_H
#include "testkit.h"
#include "../tools/fullsize/fullsize_write.h"
#include "models/model.h"

/* tools/fullsize/<name>.tensors.txt, loaded; fails the test on error. */
void fs_kit_load_list(const char *name, fs_list *l);
/* The list's tensor called name, or NULL. */
const fs_tensor *fs_kit_find(const fs_list *l, const char *name);
/* An fs_sink writing to a stdio file. */
typedef struct {
    FILE *f;
} fs_kit_file_sink;
int fs_kit_put(void *user, const void *p, size_t n);

/* Writes list in format f as <dir>/<file>; the path goes to path[n]. */
void fs_kit_write_one(const char *dir, const char *list, fs_format f, const char *file, char *path, size_t n);
/* Every tensor of the file at path holds the recipe's values at its stored
 * type: the list dtype's rounding, then (fp8 / Q8_0) the format's own; a
 * GGUF says architecture arch. seen[d]: how many tensors are stored as d. */
void fs_kit_check_file(const char *list, fs_format f, const char *path, const char *arch, int seen[5]);

/* What the taps of one forward pass saw: the largest |activation|, the rms
 * of the last tap, non-finite values; the rms of the taps named show[] is
 * printed. */
typedef struct {
    double max_abs, last_rms;
    int taps, bad;
    char show[2][48];
} fs_kit_act_stats;
void fs_kit_on_tap(void *user, const char *name, const float *x, int rows, int cols);

/* One Euler step of a 64x64 "a photo of a cat" at cfg on m's default
 * schedule; every pixel must be finite. Returns the image's mean. */
double fs_kit_one_step(sdw_model *m, const char *what, float cfg);
#endif
