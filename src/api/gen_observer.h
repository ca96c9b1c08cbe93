/* gen_observer.h: the one hook of the generation API that is not public:
 * the pipeline's intermediate tensors, run by run, for `generate --dump`
 * (cli/dump.c). Only sdw.h is needed to use it. */
#ifndef SDW_API_GEN_OBSERVER_H
#define SDW_API_GEN_OBSERVER_H
#include "sdw.h"

/* begin is called before run k of batch_count and returns the observer's
 * user pointer for it (NULL: nothing observed); observe gets each tensor
 * (name, 0-based step or -1, data in NCHW or as named, its shape); end is
 * called after the run with whether it succeeded. */
typedef struct {
    void *(*begin)(void *user, int run);
    void (*observe)(void *run_user, const char *name, int step, const float *x, int ndim, const int64_t *shape);
    void (*end)(void *run_user, bool ok);
    void *user;
} sdw_gen_observer;
/* sdw_generate with the pipeline's tensors observed (o may be NULL). */
sdw_status sdw_generate_observed(sdw_model *m, const sdw_gen_params *p, sdw_gen_result *r, const sdw_gen_observer *o);
#endif
