/* infotext.c: see infotext.h. Values containing commas, colons or quotes are
 * quoted as A1111 quotes them (json-style string). */
#include "pipeline/infotext.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = true; return; }
        if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t cap = (b->cap + (size_t)k + 256) * 2;
        char *p = realloc(b->s, cap);
        if (!p) { b->oom = true; return; }
        b->s = p;
        b->cap = cap;
    }
}

/* A1111 quotes a value when it contains ',', ':' or '"'. */
static void put_value(buf *b, const char *key, const char *v)
{
    put(b, ", %s: ", key);
    if (!strpbrk(v, ",:\"\n")) {
        put(b, "%s", v);
        return;
    }
    put(b, "\"");
    for (const char *c = v; *c; c++) {
        if (*c == '"' || *c == '\\') put(b, "\\%c", *c);
        else if (*c == '\n') put(b, "\\n");
        else put(b, "%c", *c);
    }
    put(b, "\"");
}

char *sdw_infotext(const sdw_infotext_args *a)
{
    const sdw_pipeline_params *p = a->p;
    buf b = { 0 };
    put(&b, "%s", p->prompt ? p->prompt : "");
    if (p->negative_prompt && p->negative_prompt[0]) put(&b, "\nNegative prompt: %s", p->negative_prompt);
    put(&b, "\nSteps: %d, Sampler: %s", p->steps, sdw_sampler_a1111_name(p->sampler));
    put(&b, ", Schedule type: %s", sdw_schedule_a1111_name(p->schedule));
    put(&b, ", CFG scale: %g", p->cfg_scale);
    /* Forge's name for FLUX dev's distilled guidance. */
    if (p->guidance > 0) put(&b, ", Distilled CFG Scale: %g", p->guidance);
    put(&b, ", Seed: %llu, Size: %dx%d", (unsigned long long)a->seed, p->width, p->height);
    if (a->model_hash) put(&b, ", Model hash: %s", a->model_hash);
    if (a->model_name) put_value(&b, "Model", a->model_name);
    if (p->init_image) put(&b, ", Denoising strength: %g", p->strength);
    if (p->clip_skip > 1) put(&b, ", Clip skip: %d", p->clip_skip);
    if (p->batch_size > 1) put(&b, ", Batch size: %d", p->batch_size);
    if (p->rng == SDW_RNG_CPU) put(&b, ", RNG: CPU");
    if (a->lora_hashes) put_value(&b, "Lora hashes", a->lora_hashes);
    put(&b, ", Version: sd-worker %s", SDW_VERSION);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
