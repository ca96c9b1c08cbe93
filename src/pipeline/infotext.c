/* infotext.c: see infotext.h. Values containing commas, colons or quotes are
 * quoted as A1111 quotes them (json-style string). */
#include "pipeline/infotext.h"
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

static const char *control_mode_name(sdw_control_mode m)
{
    return m == SDW_CONTROL_PROMPT ? "My prompt is more important"
           : m == SDW_CONTROL_CONTROLNET ? "ControlNet is more important"
                                         : "Balanced";
}

/* A name inside a unit's value: sd-webui-controlnet writes no unit whose
 * values hold ',' or ':' (its parser splits on them), so they become '_'. */
static void put_name(buf *b, const char *s)
{
    for (const char *c = s; *c; c++) put(b, "%c", (*c == ',' || *c == ':' || *c == '"' || *c == '\n') ? '_' : *c);
}

/* sd-webui-controlnet's infotext.py serialize_unit: the ControlNetUnit
 * fields in declaration order as "Display Name: value", minus the excluded
 * ones (image, enabled, advanced weighting, ...) and those left at -1. */
static void put_control(buf *b, int k, const sdw_control_unit *u, const sdw_infotext_control *c)
{
    buf v = { 0 };
    put(&v, "Module: ");
    put_name(&v, c && c->module ? c->module : "none");
    put(&v, ", Model: ");
    put_name(&v, c && c->model ? c->model : "None");
    if (c && c->hash && c->hash[0]) put(&v, " [%s]", c->hash);
    put(&v, ", Weight: %g, Resize Mode: %s, Low Vram: False", u->scale,
        c && c->resize_mode ? c->resize_mode : "Crop and Resize");
    if (c && c->processor_res >= 0) put(&v, ", Processor Res: %d", c->processor_res);
    if (c && c->threshold_a >= 0) put(&v, ", Threshold A: %g", c->threshold_a);
    if (c && c->threshold_b >= 0) put(&v, ", Threshold B: %g", c->threshold_b);
    put(&v, ", Guidance Start: %g, Guidance End: %g, Pixel Perfect: False, Control Mode: %s", u->start, u->end,
        control_mode_name(u->mode));
    put(&v, ", Hr Option: Both, Save Detected Map: True");
    if (v.oom) b->oom = true;
    else {
        char key[32];
        snprintf(key, sizeof key, "ControlNet %d", k);
        put_value(b, key, v.s);
    }
    free(v.s);
}

char *sdw_infotext(const sdw_infotext_args *a) { return sdw_infotext_controls(a, NULL); }

char *sdw_infotext_controls(const sdw_infotext_args *a, const sdw_infotext_control *controls)
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
    /* Extensions' entries follow the built-in ones (A1111's extra_generation_params). */
    for (int k = 0; k < p->n_controls && p->controls; k++) put_control(&b, k, &p->controls[k], controls ? &controls[k] : NULL);
    if (a->lora_hashes) put_value(&b, "Lora hashes", a->lora_hashes);
    put(&b, ", Version: sd-worker %s", SDW_VERSION);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

void sdw_infotext_short_hash(const char *path, char out[16])
{
    out[0] = 0;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return;
    FILE *f = fopen(path, "rb");
    if (!f) return;
    /* Past the end (a file under 1 MiB) the hash is of nothing, as Python's read() there. */
    unsigned char *chunk = malloc(0x10000), md[32];
    size_t n = chunk && fseek(f, 0x100000, SEEK_SET) == 0 ? fread(chunk, 1, 0x10000, f) : 0;
    unsigned int len = 0;
    if (chunk && !ferror(f) && EVP_Digest(chunk, n, md, &len, EVP_sha256(), NULL) && len == 32)
        snprintf(out, 16, "%02x%02x%02x%02x", md[0], md[1], md[2], md[3]);
    free(chunk);
    fclose(f);
}
