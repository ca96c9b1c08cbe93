/* safetensors_write.c: see safetensors_write.h. The header is built with
 * cJSON (names escaped), padded with spaces to a multiple of 8. */
#include "io/safetensors_write.h"
#include "core/error.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sdw_status sdw_st_write_f32(const char *path, const sdw_st_out *t, int n)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_AddObjectToObject(root, t[i].name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *ofs = e ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        if (!shape || !ofs) { cJSON_Delete(root); return sdw_fail(SDW_ERR_NOMEM, "out of memory"); }
        cJSON_AddStringToObject(e, "dtype", "F32");
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
            numel *= (uint64_t)t[i].shape[d];
        }
        cJSON_AddItemToArray(ofs, cJSON_CreateNumber((double)off));
        off += numel * 4;
        cJSON_AddItemToArray(ofs, cJSON_CreateNumber((double)off));
    }
    char *hdr = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!hdr) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;
    FILE *f = fopen(path, "wb");
    if (!f) { free(hdr); return sdw_fail(SDW_ERR_IO, "%s: %s", path, strerror(errno)); }
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    bool ok = fwrite(len, 1, 8, f) == 8 && fwrite(hdr, 1, hl, f) == hl;
    for (size_t i = hl; i < padded && ok; i++) ok = fputc(' ', f) != EOF;
    free(hdr);
    for (int i = 0; i < n && ok; i++) {
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (size_t)t[i].shape[d];
        ok = fwrite(t[i].data, 4, numel, f) == numel;
    }
    if (fclose(f) != 0) ok = false;
    if (!ok) {
        remove(path);
        return sdw_fail(SDW_ERR_IO, "%s: write failed", path);
    }
    return SDW_OK;
}
