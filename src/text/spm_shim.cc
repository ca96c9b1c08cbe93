/* spm_shim.cc: the C functions of spm_shim.h over sentencepiece's C++
 * SentencePieceProcessor. Every entry point catches whatever the C++ side
 * throws (std::bad_alloc, mostly) and turns it into an sdw_status, so C
 * callers never see an exception. */
#include "text/spm_shim.h"
/* core/error.h has no extern "C" block of its own. */
extern "C" {
#include "core/error.h"
}
#include <sentencepiece_processor.h>
#include <climits>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

struct sdw_spm {
    sentencepiece::SentencePieceProcessor sp;
};

static sdw_status fail_status(const char *what, const sentencepiece::util::Status &s)
{
    return sdw_fail(SDW_ERR_FORMAT, "%s: sentencepiece: %s", what, s.ToString().c_str());
}

extern "C" sdw_status sdw_spm_load(const void *data, size_t size, const char *name, sdw_spm **out)
{
    *out = nullptr;
    try {
        sdw_spm *m = new sdw_spm;
        auto s = m->sp.LoadFromSerializedProto(std::string_view(static_cast<const char *>(data), size));
        if (!s.ok()) {
            delete m;
            return fail_status(name, s);
        }
        *out = m;
        return SDW_OK;
    } catch (const std::bad_alloc &) {
        return sdw_fail(SDW_ERR_NOMEM, "%s: out of memory loading the SentencePiece model", name);
    } catch (...) {
        return sdw_fail(SDW_ERR_FORMAT, "%s: the SentencePiece model could not be loaded", name);
    }
}

extern "C" void sdw_spm_free(sdw_spm *m)
{
    delete m;
}

/* Appends src to the C array, growing it by doubling. */
static sdw_status append_ids(const std::vector<int> &src, int32_t **ids, int *n, int *cap)
{
    if (src.size() > (size_t)(INT_MAX / 2 - *n))
        return sdw_fail(SDW_ERR_NOMEM, "sentencepiece: too many pieces (%zu)", src.size());
    int need = *n + (int)src.size();
    if (need > *cap) {
        int c = *cap ? *cap : 64;
        while (c < need) c *= 2;
        int32_t *p = static_cast<int32_t *>(realloc(*ids, (size_t)c * sizeof **ids));
        if (!p) return sdw_fail(SDW_ERR_NOMEM, "sentencepiece: out of memory for %d ids", c);
        *ids = p;
        *cap = c;
    }
    for (int v : src) (*ids)[(*n)++] = v;
    return SDW_OK;
}

extern "C" sdw_status sdw_spm_encode(const sdw_spm *m, const char *text, size_t len, int32_t **ids, int *n,
                                     int *cap)
{
    try {
        std::vector<int> out;
        auto s = m->sp.Encode(std::string_view(text, len), &out);
        if (!s.ok()) return fail_status("encoding text", s);
        return append_ids(out, ids, n, cap);
    } catch (const std::bad_alloc &) {
        return sdw_fail(SDW_ERR_NOMEM, "sentencepiece: out of memory encoding %zu bytes", len);
    } catch (...) {
        return sdw_fail(SDW_ERR_INVALID_ARG, "sentencepiece: encoding %zu bytes failed", len);
    }
}

extern "C" int sdw_spm_piece_count(const sdw_spm *m)
{
    return m->sp.GetPieceSize();
}

extern "C" const char *sdw_spm_piece(const sdw_spm *m, int32_t id)
{
    /* IdToPiece returns a reference into the model, stable while it lives. */
    if (id < 0 || id >= m->sp.GetPieceSize()) return nullptr;
    return m->sp.IdToPiece(id).c_str();
}
