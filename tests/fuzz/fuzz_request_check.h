/* fuzz_request_check.h: what every parsed job request must satisfy, shared
 * by the request fuzz targets (fuzz_request_*.c): a failure leaves a message
 * and an empty request; a success is within the edge's limits. */
#ifndef SDW_FUZZ_REQUEST_CHECK_H
#define SDW_FUZZ_REQUEST_CHECK_H
#include "server/job_request.h"
#include "core/error.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static sdw_request_limits fuzz_limits(void)
{
    sdw_request_limits l = sdw_request_limits_default();
    l.max_pixels = 256 * 256;          /* keeps decoding cheap */
    l.max_image_bytes = 1 << 20;
    l.max_prompt = 4096;
    return l;
}

static void fuzz_check_request(sdw_status s, sdw_job_request *r, const sdw_request_limits *l)
{
    if (s != SDW_OK) {
        if (!sdw_last_error()[0]) abort();
        sdw_job_request_free(r);
        return;
    }
    if (!r->prompt || strlen(r->prompt) > l->max_prompt) abort();
    if (r->steps < 0 || r->steps > SDW_REQ_MAX_STEPS) abort();
    if (r->width && (r->width < SDW_REQ_MIN_SIZE || r->width > SDW_REQ_MAX_SIZE || r->width % 8)) abort();
    if (r->height && (r->height < SDW_REQ_MIN_SIZE || r->height > SDW_REQ_MAX_SIZE || r->height % 8)) abort();
    if (!isnan(r->cfg) && !(r->cfg >= 0 && r->cfg <= SDW_REQ_MAX_GUIDANCE)) abort();
    if (!(r->strength > 0 && r->strength <= 1)) abort();
    if (r->batch_size < 1 || r->batch_size > SDW_REQ_MAX_BATCH || r->n_iter < 1 || r->n_iter > SDW_REQ_MAX_BATCH) abort();
    if (r->seed < -1 || r->n_loras > SDW_REQ_MAX_LORAS) abort();
    for (int i = 0; i < r->n_loras; i++)
        if (!r->loras[i].name[0] || r->loras[i].name[0] == '/' || strstr(r->loras[i].name, "..")) abort();
    if (r->kind == SDW_JOB_IMG2IMG && !r->init.w) abort();
    if (r->kind == SDW_JOB_INPAINT && (!r->mask.w || r->mask.w != r->init.w || r->mask.h != r->init.h)) abort();
    if (r->init.w && (int64_t)r->init.w * r->init.h > l->max_pixels) abort();
    if (r->n_slg < 0 || r->n_slg > SDW_MAX_SLG_LAYERS || !(r->slg_start >= 0 && r->slg_start <= r->slg_end && r->slg_end <= 1))
        abort();
    /* ControlNet units: a name (never a path out of the folder), ranges, an image within the limits. */
    if (r->n_controls < 0 || r->n_controls > SDW_REQ_MAX_CONTROLS || (r->n_controls && !r->controls)) abort();
    for (int i = 0; i < r->n_controls; i++) {
        const sdw_job_control *c = &r->controls[i];
        if (!c->model || !c->model[0] || c->model[0] == '/' || strstr(c->model, "..")) abort();
        if (!(c->scale >= 0 && c->scale <= SDW_REQ_MAX_CONTROL_WEIGHT)) abort();
        if (!(c->start >= 0 && c->start <= c->end && c->end <= 1)) abort();
        if (c->image.w && (int64_t)c->image.w * c->image.h > l->max_pixels) abort();
        if (!c->image.w && !r->init.w) abort();   /* no image of its own: the init image's */
    }
    sdw_job_request_free(r);
}
#endif
