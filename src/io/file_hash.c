/* file_hash.c: see file_hash.h. The cache is a text file of lines
 * "<sha256> <size> <mtime> <absolute path>". */
#include "io/file_hash.h"
#include "core/error.h"
#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool cache_path(char *buf, size_t n)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[PATH_MAX];
    if (xdg && xdg[0]) snprintf(dir, sizeof dir, "%s/sd-worker", xdg);
    else if (home && home[0]) snprintf(dir, sizeof dir, "%s/.cache/sd-worker", home);
    else return false;
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash) {
        *slash = 0;
        mkdir(parent, 0755);
    }
    mkdir(dir, 0755);
    return snprintf(buf, n, "%s/sha256-cache.txt", dir) < (int)n;
}

static bool cache_lookup(const char *cache, const char *abs, const struct stat *sb, char hex[65])
{
    FILE *f = fopen(cache, "r");
    if (!f) return false;
    char line[PATH_MAX + 128], h[65], p[PATH_MAX];
    long long size, mtime;
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        int off = 0;
        if (sscanf(line, "%64s %lld %lld %n", h, &size, &mtime, &off) == 3 && off > 0) {
            snprintf(p, sizeof p, "%s", line + off);
            if (!strcmp(p, abs) && size == (long long)sb->st_size && mtime == (long long)sb->st_mtime &&
                strlen(h) == 64) {
                memcpy(hex, h, 65);
                found = true;
            }
        }
    }
    fclose(f);
    return found;
}

sdw_status sdw_file_sha256(const char *path, char hex[65])
{
    struct stat sb;
    char abs[PATH_MAX], cache[PATH_MAX];
    if (stat(path, &sb) != 0 || !realpath(path, abs)) return sdw_fail(SDW_ERR_IO, "%s: %s", path, strerror(errno));
    bool have_cache = cache_path(cache, sizeof cache);
    if (have_cache && cache_lookup(cache, abs, &sb, hex)) return SDW_OK;
    FILE *f = fopen(path, "rb");
    if (!f) return sdw_fail(SDW_ERR_IO, "%s: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *chunk = malloc(1 << 20), md[32];
    unsigned int mdlen = 0;
    sdw_status s = (ctx && chunk && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) ? SDW_OK
                                                                                : sdw_fail(SDW_ERR_NOMEM, "sha256 setup failed");
    size_t k;
    while (s == SDW_OK && (k = fread(chunk, 1, 1 << 20, f)) > 0)
        if (!EVP_DigestUpdate(ctx, chunk, k)) s = sdw_fail(SDW_ERR_IO, "sha256 failed");
    if (s == SDW_OK && ferror(f)) s = sdw_fail(SDW_ERR_IO, "%s: read error", path);
    if (s == SDW_OK && !EVP_DigestFinal_ex(ctx, md, &mdlen)) s = sdw_fail(SDW_ERR_IO, "sha256 failed");
    fclose(f);
    free(chunk);
    EVP_MD_CTX_free(ctx);
    if (s != SDW_OK) return s;
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (have_cache) {
        FILE *c = fopen(cache, "a");
        if (c) {
            fprintf(c, "%s %lld %lld %s\n", hex, (long long)sb.st_size, (long long)sb.st_mtime, abs);
            fclose(c);
        }
    }
    return SDW_OK;
}
