/* lora_kit.h: what the LoRA tests (test_lora, test_lora_flux, test_lora_sd3)
 * share: a temp folder for the files they write, LoRA safetensors built from
 * random factors, a model layer's weights and stored bytes (to check a merge
 * and its undo), the tiny models a family's LoRA is refused on, and the
 * refusal check. Linked into those tests only (tests/CMakeLists.txt). */
#ifndef SDW_TEST_LORA_KIT_H
#define SDW_TEST_LORA_KIT_H
#include "testkit.h"
#include "io/safetensors_write.h"
#include "models/model.h"

/* A temp folder /tmp/<prefix>-XXXXXX for the files a test writes: made in
 * a cmocka group setup (0 or -1), removed with all in it in the teardown. */
int lora_tmpdir_make(const char *prefix);
int lora_tmpdir_remove(void);
const char *lora_tmpdir(void);

/* A LoRA file being built: tensors of up to 4 dims, f32. */
#define LORA_FILE_MAX 128
typedef struct {
    sdw_st_out t[LORA_FILE_MAX];
    int64_t shapes[LORA_FILE_MAX][4];
    float *data[LORA_FILE_MAX];
    int n;
} lora_file;

/* Adds tensor name [d0, d1, d2, d3][:ndim] (ndim 0: one value) filled by
 * test_fill(seed); returns its data to change. */
float *lora_file_add(lora_file *f, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                     uint32_t seed);
/* Writes f as <tmpdir>/<stem>.safetensors; the path is a static buffer. */
const char *lora_file_write(lora_file *f, const char *stem);
/* Frees f's tensors and empties it for reuse. */
void lora_file_free(lora_file *f);
/* A one-module kohya file (zero factors, down [2, cols], up [rows, 2]) with
 * ss_base_model_version = base in its header; the path is a static buffer. */
const char *lora_file_with_meta(const char *module, int rows, int cols, const char *base);

/* The layer called name in l; fails the test if there is none. */
const sdw_named_layer *lora_find_layer(const sdw_layer_list *l, const char *name);
/* A linear or conv layer's weights as f32 (malloc'd). */
float *lora_layer_weights(const sdw_model *m, const sdw_named_layer *l);
/* The bytes the layer stores, and a malloc'd copy of them. */
const void *lora_layer_stored(const sdw_named_layer *l, size_t *bytes);
void *lora_layer_stored_copy(const sdw_named_layer *l, size_t *bytes);

/* The tiny FLUX.1-dev transformer file (under tests/data) with its ae,
 * CLIP-L and T5 from flux-tiny-common, as the pipeline loads them. */
sdw_status lora_load_flux_tiny(const char *file, sdw_precision prec, sdw_weight_type wt, sdw_model **m);
/* The tiny SD1 model in f32; fails the test on error. */
sdw_model *lora_load_sd1_tiny(void);

/* Setting path at strength 1 on m must fail with an error naming both strings (printed). */
void lora_expect_refusal(sdw_model *m, const char *path, const char *must_say1, const char *must_say2);
#endif
