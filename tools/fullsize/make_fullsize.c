/* make_fullsize.c: sdw-make-fullsize, writes the full-size random-weight
 * single-file checkpoints of tests/data/fullsize/README.md (section 1) bit for
 * bit, streaming tensor by tensor so memory stays bounded (a 7 GB SDXL file
 * needs a few MB). Hashes use libcrypto: its SHA-NI code hashes ~1 GB/s,
 * several times faster than coreutils' sha256sum. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* getline, strdup, strtok_r, fileno, clock_gettime */
#endif
#include "fullsize_recipe.h"
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

#define CHUNK (1u << 20) /* elements per write: 2 MB of f16 */

static const char *const FAMILIES[] = {"sd15", "sd15-inpaint", "sd21-v", "sdxl"};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdw-make-fullsize FAMILY [--seed N] -o OUT.safetensors [--tensors-list PATH]\n"
            "                         [--sha256] [--per-tensor-sha FILE] [-q]\n"
            "       sdw-make-fullsize selftest\n"
            "FAMILY: sd15, sd15-inpaint, sd21-v, sdxl (any label with --tensors-list)\n"
            "  --seed N              recipe seed (default 1)\n"
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
        fprintf(stderr, "sdw-make-fullsize: -o OUT.safetensors is required\n");
        return -1;
    }
    int known = 0;
    for (size_t i = 0; i < sizeof FAMILIES / sizeof FAMILIES[0]; i++) known |= strcmp(o->family, FAMILIES[i]) == 0;
    if (!known && !o->list_path) {
        fprintf(stderr, "sdw-make-fullsize: unknown family '%s' (sd15, sd15-inpaint, sd21-v, sdxl)\n", o->family);
        return -1;
    }
    return 0;
}

/* Writes bytes to the file and, when asked, to the running hashes. */
typedef struct {
    FILE *f;
    EVP_MD_CTX *file_hash, *tensor_hash;
} sink;

static int put(sink *s, const void *p, size_t n)
{
    if (fwrite(p, 1, n, s->f) != n) return -1;
    if (s->file_hash && !EVP_DigestUpdate(s->file_hash, p, n)) return -1;
    if (s->tensor_hash && !EVP_DigestUpdate(s->tensor_hash, p, n)) return -1;
    return 0;
}

static void hex(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static int write_file(const options *o, const fs_list *l, FILE *f, FILE *per_tensor, uint8_t digest[EVP_MAX_MD_SIZE],
                      uint64_t *total)
{
    size_t hlen;
    uint64_t data_bytes;
    char *hdr = fs_header(l, &hlen, &data_bytes);
    uint16_t *buf = malloc(CHUNK * sizeof *buf);
    EVP_MD_CTX *fh = o->sha256 ? EVP_MD_CTX_new() : NULL, *th = per_tensor ? EVP_MD_CTX_new() : NULL;
    sink s = {f, fh, NULL};
    int rc = -1;
    if (!hdr || !buf || (o->sha256 && !fh) || (per_tensor && !th)) {
        fprintf(stderr, "sdw-make-fullsize: out of memory\n");
        goto done;
    }
    if (fh && !EVP_DigestInit_ex(fh, EVP_sha256(), NULL)) goto hash_error;
    uint8_t n8[8];
    for (int i = 0; i < 8; i++) n8[i] = (uint8_t)((uint64_t)hlen >> (8 * i)); /* u64 little-endian */
    if (put(&s, n8, 8) || put(&s, hdr, hlen)) goto io_error;
    double t0 = now_s(), next_report = t0 + 5.0;
    uint64_t done_bytes = 0;
    for (size_t i = 0; i < l->n; i++) {
        const fs_tensor *t = &l->t[i];
        if (th) {
            if (!EVP_DigestInit_ex(th, EVP_sha256(), NULL)) goto hash_error;
            s.tensor_hash = th;
        }
        for (uint64_t a = 0; a < t->numel; a += CHUNK) {
            size_t n = t->numel - a < CHUNK ? (size_t)(t->numel - a) : CHUNK;
            fs_fill(t, o->seed, a, n, buf);
            fs_to_le16(buf, n);
            if (put(&s, buf, 2 * n)) goto io_error;
        }
        done_bytes += 2 * t->numel;
        if (th) {
            uint8_t d[EVP_MAX_MD_SIZE];
            char h16[17];
            if (!EVP_DigestFinal_ex(th, d, NULL)) goto hash_error;
            hex(d, 8, h16);
            fprintf(per_tensor, "%s %s\n", t->name, h16);
        }
        if (!o->quiet && now_s() >= next_report) {
            fprintf(stderr, "  %5.1f%%  %zu/%zu tensors  %.0f MB/s\n", 100.0 * (double)done_bytes / (double)data_bytes,
                    i + 1, l->n, (double)done_bytes / 1e6 / (now_s() - t0));
            next_report = now_s() + 5.0;
        }
    }
    if (fh && !EVP_DigestFinal_ex(fh, digest, NULL)) goto hash_error;
    *total = 8 + hlen + data_bytes;
    rc = 0;
    goto done;
io_error:
    fprintf(stderr, "sdw-make-fullsize: write to %s failed: %s\n", o->out, strerror(errno));
    goto done;
hash_error:
    fprintf(stderr, "sdw-make-fullsize: SHA-256 (libcrypto) failed\n");
done:
    EVP_MD_CTX_free(fh);
    EVP_MD_CTX_free(th);
    free(hdr);
    free(buf);
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
        fprintf(stderr, "family %s seed %llu: %zu tensors, %llu parameters -> %s\n", o->family,
                (unsigned long long)o->seed, l.n, (unsigned long long)l.params, o->out);
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
