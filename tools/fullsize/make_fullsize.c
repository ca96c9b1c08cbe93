/* make_fullsize.c: sdw-make-fullsize, writes the full-size random-weight
 * single-file checkpoints of tests/data/fullsize/README.md (section 1) bit for
 * bit, and the FLUX.1 and SD3 / SD3.5 files of the same recipe (FLUX.md and
 * SD3.md here: transformer as BF16 safetensors or a Q8_0 GGUF, ae, clip_l,
 * t5xxl in fp16 or fp8; SD3 single files, MMDiT GGUFs, VAE, clip_l, clip_g),
 * streaming chunk by chunk so memory stays bounded (a 12 GB GGUF needs a few
 * MB; fullsize_write.c). Hashes use libcrypto: its SHA-NI code hashes
 * ~1 GB/s, several times faster than coreutils' sha256sum. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* getline, strdup, strtok_r, fileno, clock_gettime */
#endif
#include "fullsize_write.h"
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef SDW_FULLSIZE_DIR
#define SDW_FULLSIZE_DIR "tools/fullsize"
#endif

static const char *const FAMILIES[] = {
    "sd15",        "sd15-inpaint",      "sd21-v",     "sdxl",             "flux-dev",   "flux-schnell",
    "flux-ae",     "flux-clip_l",       "flux-t5xxl", "sd3-medium",       "sd3-medium-mmdit",
    "sd35-medium", "sd35-medium-mmdit", "sd35-large", "sd35-large-mmdit", "sd3-vae",    "sd3-clip_l",
    "sd3-clip_g",  "sd15-controlnet",   "sdxl-controlnet"};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdw-make-fullsize FAMILY [--seed N] -o OUT [--format F] [--tensors-list PATH]\n"
            "                         [--sha256] [--per-tensor-sha FILE] [-q]\n"
            "       sdw-make-fullsize selftest\n"
            "FAMILY: sd15, sd15-inpaint, sd21-v, sdxl; flux-dev, flux-schnell (BFL transformer),\n"
            "        flux-ae, flux-clip_l, flux-t5xxl; sd3-medium, sd35-medium, sd35-large (single\n"
            "        files: MMDiT + VAE), sd3-medium-mmdit, sd35-medium-mmdit, sd35-large-mmdit (the\n"
            "        MMDiT alone, bare names: for gguf-q8_0), sd3-vae, sd3-clip_l, sd3-clip_g (SD3's\n"
            "        T5 is flux-t5xxl); sd15-controlnet, sdxl-controlnet (full-size ControlNets,\n"
            "        CONTROLNET.md) (any label with --tensors-list)\n"
            "  --seed N              recipe seed (default 1)\n"
            "  --format F            safetensors (default: every tensor at its list dtype),\n"
            "                        fp8 (F8_E4M3 for 2-D+ tensors: t5xxl_fp8_e4m3fn's layout),\n"
            "                        gguf-q8_0 (a FLUX or SD3 transformer as city96's Q8_0 GGUF)\n"
            "  --tensors-list PATH   tensor list (default %s/FAMILY.tensors.txt)\n"
            "  --sha256              print the SHA-256 of the written file (hashed while writing)\n"
            "  --per-tensor-sha FILE write 'name first-16-hex-of-sha256' per tensor (the\n"
            "                        <family>.seed1.sha256.txt format, for diffing)\n"
            "  -q                    no progress on stderr\n",
            SDW_FULLSIZE_DIR);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const char *family, *out, *list_path, *per_tensor_path;
    uint64_t seed;
    fs_format format;
    int sha256, quiet;
} options;

static int parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->family = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (strcmp(a, "--seed") == 0 && has_val) {
            const char *s = argv[++i];
            char *end;
            errno = 0;
            unsigned long long v = strtoull(s, &end, 10);
            if (*s < '0' || *s > '9' || errno || *end) {
                fprintf(stderr, "sdw-make-fullsize: bad seed '%s' (an unsigned 64-bit integer)\n", s);
                return -1;
            }
            o->seed = v;
        } else if (strcmp(a, "--format") == 0 && has_val) {
            if (fs_format_parse(argv[++i], &o->format)) {
                fprintf(stderr, "sdw-make-fullsize: --format must be safetensors, fp8 or gguf-q8_0, not '%s'\n",
                        argv[i]);
                return -1;
            }
        } else if (strcmp(a, "-o") == 0 && has_val) {
            o->out = argv[++i];
        } else if (strcmp(a, "--tensors-list") == 0 && has_val) {
            o->list_path = argv[++i];
        } else if (strcmp(a, "--per-tensor-sha") == 0 && has_val) {
            o->per_tensor_path = argv[++i];
        } else if (strcmp(a, "--sha256") == 0) {
            o->sha256 = 1;
        } else if (strcmp(a, "-q") == 0) {
            o->quiet = 1;
        } else {
            fprintf(stderr, "sdw-make-fullsize: unknown or incomplete option '%s'\n", a);
            return -1;
        }
    }
    if (!o->out) {
        fprintf(stderr, "sdw-make-fullsize: -o OUT is required\n");
        return -1;
    }
    int known = 0;
    for (size_t i = 0; i < sizeof FAMILIES / sizeof FAMILIES[0]; i++) known |= strcmp(o->family, FAMILIES[i]) == 0;
    if (!known && !o->list_path) {
        fprintf(stderr,
                "sdw-make-fullsize: unknown family '%s' (sd15, sd15-inpaint, sd21-v, sdxl, flux-dev, flux-schnell, "
                "flux-ae, flux-clip_l, flux-t5xxl, sd3-medium[-mmdit], sd35-medium[-mmdit], sd35-large[-mmdit], "
                "sd3-vae, sd3-clip_l, sd3-clip_g, sd15-controlnet, sdxl-controlnet)\n",
                o->family);
        return -1;
    }
    return 0;
}

/* Writes bytes to the file and, when asked, to the running hashes; reports
 * progress and the per-tensor hashes as tensors end. */
typedef struct {
    FILE *f, *per_tensor;
    EVP_MD_CTX *file_hash, *tensor_hash;
    const fs_list *l;
    int quiet, hash_error;
    double t0, next_report;
    uint64_t done_bytes, data_bytes;
} sink;

static int put(void *user, const void *p, size_t n)
{
    sink *s = user;
    if (fwrite(p, 1, n, s->f) != n) return -1;
    if (s->file_hash && !EVP_DigestUpdate(s->file_hash, p, n)) return s->hash_error = -1;
    if (s->tensor_hash && !EVP_DigestUpdate(s->tensor_hash, p, n)) return s->hash_error = -1;
    return 0;
}

static void hex(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static int tensor_begin(void *user, size_t i)
{
    (void)i;
    sink *s = user;
    if (!s->per_tensor) return 0;
    if (!s->tensor_hash && !(s->tensor_hash = EVP_MD_CTX_new())) return s->hash_error = -1;
    if (!EVP_DigestInit_ex(s->tensor_hash, EVP_sha256(), NULL)) return s->hash_error = -1;
    return 0;
}

static int tensor_end(void *user, size_t i, uint64_t bytes)
{
    sink *s = user;
    if (s->per_tensor) {
        uint8_t d[EVP_MAX_MD_SIZE];
        char h16[17];
        if (!EVP_DigestFinal_ex(s->tensor_hash, d, NULL)) return s->hash_error = -1;
        hex(d, 8, h16);
        fprintf(s->per_tensor, "%s %s\n", s->l->t[i].name, h16);
    }
    s->done_bytes += bytes;
    if (!s->quiet && now_s() >= s->next_report) {
        fprintf(stderr, "  %5.1f%%  %zu/%zu tensors  %.0f MB/s\n", 100.0 * (double)s->done_bytes / (double)s->data_bytes,
                i + 1, s->l->n, (double)s->done_bytes / 1e6 / (now_s() - s->t0));
        s->next_report = now_s() + 5.0;
    }
    return 0;
}

static int write_file(const options *o, const fs_list *l, FILE *f, FILE *per_tensor, uint8_t digest[EVP_MAX_MD_SIZE],
                      uint64_t *total)
{
    sink s = {f, per_tensor, o->sha256 ? EVP_MD_CTX_new() : NULL, NULL, l, o->quiet, 0, now_s(), now_s() + 5.0, 0, 0};
    for (size_t i = 0; i < l->n; i++)
        s.data_bytes += fs_dtype_bytes(fs_stored_type(l, &l->t[i], o->format), l->t[i].numel);
    int rc = -1;
    char err[512] = "";
    if (o->sha256 && (!s.file_hash || !EVP_DigestInit_ex(s.file_hash, EVP_sha256(), NULL))) {
        fprintf(stderr, "sdw-make-fullsize: SHA-256 (libcrypto) failed\n");
        goto done;
    }
    fs_sink fsk = {put, tensor_begin, tensor_end, &s};
    if (fs_write(l, o->format, o->seed, &fsk, total, err, sizeof err)) {
        if (s.hash_error) fprintf(stderr, "sdw-make-fullsize: SHA-256 (libcrypto) failed\n");
        else if (ferror(f)) fprintf(stderr, "sdw-make-fullsize: write to %s failed: %s\n", o->out, strerror(errno));
        else fprintf(stderr, "sdw-make-fullsize: %s\n", err);
        goto done;
    }
    if (s.file_hash && !EVP_DigestFinal_ex(s.file_hash, digest, NULL)) {
        fprintf(stderr, "sdw-make-fullsize: SHA-256 (libcrypto) failed\n");
        goto done;
    }
    rc = 0;
done:
    EVP_MD_CTX_free(s.file_hash);
    EVP_MD_CTX_free(s.tensor_hash);
    return rc;
}

static int generate(const options *o)
{
    char path[4096], err[512];
    const char *list_path = o->list_path;
    if (!list_path) {
        snprintf(path, sizeof path, "%s/%s.tensors.txt", SDW_FULLSIZE_DIR, o->family);
        list_path = path;
    }
    fs_list l;
    if (fs_list_load(list_path, &l, err, sizeof err)) {
        fprintf(stderr, "sdw-make-fullsize: %s\n", err);
        return 1;
    }
    if (!o->quiet)
        fprintf(stderr, "family %s seed %llu: %zu tensors, %llu parameters -> %s (%s)\n", o->family,
                (unsigned long long)o->seed, l.n, (unsigned long long)l.params, o->out, fs_format_name(o->format));
    FILE *f = fopen(o->out, "wb");
    if (!f) {
        fprintf(stderr, "sdw-make-fullsize: cannot create %s: %s\n", o->out, strerror(errno));
        fs_list_free(&l);
        return 1;
    }
    struct stat st;
    int regular = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode); /* never unlink /dev/null */
    FILE *pt = NULL;
    if (o->per_tensor_path && !(pt = fopen(o->per_tensor_path, "w"))) {
        fprintf(stderr, "sdw-make-fullsize: cannot create %s: %s\n", o->per_tensor_path, strerror(errno));
        fclose(f);
        if (regular) unlink(o->out);
        fs_list_free(&l);
        return 1;
    }
    double t0 = now_s();
    uint8_t digest[EVP_MAX_MD_SIZE];
    uint64_t total = 0;
    int rc = write_file(o, &l, f, pt, digest, &total);
    if (fclose(f) != 0 && rc == 0) {
        fprintf(stderr, "sdw-make-fullsize: closing %s failed: %s\n", o->out, strerror(errno));
        rc = -1;
    }
    if (pt && fclose(pt) != 0 && rc == 0) {
        fprintf(stderr, "sdw-make-fullsize: closing %s failed: %s\n", o->per_tensor_path, strerror(errno));
        rc = -1;
    }
    fs_list_free(&l);
    if (rc) {
        if (regular) unlink(o->out); /* no truncated checkpoint left behind */
        return 1;
    }
    if (!o->quiet)
        fprintf(stderr, "wrote %s: %llu bytes in %.1f s\n", o->out, (unsigned long long)total, now_s() - t0);
    if (o->sha256) {
        char h64[65];
        hex(digest, 32, h64);
        printf("%s  %s\n", h64, o->out);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "selftest") == 0) {
        if (argc != 2) {
            usage(stderr);
            return 2;
        }
        int bad = fs_selftest(stdout);
        if (bad) fprintf(stderr, "sdw-make-fullsize: selftest: %d mismatches\n", bad);
        else printf("selftest: all vectors match\n");
        return bad ? 1 : 0;
    }
    options o;
    if (parse_args(argc, argv, &o)) {
        usage(stderr);
        return 2;
    }
    return generate(&o);
}
