/* safetensors.h: a validated, memory-mapped tensor file reader: safetensors,
 * and GGUF (io/gguf.h) read into the same struct, told apart by content, so
 * every loader takes either.
 *
 * Opening a safetensors file checks everything before any tensor is touched: the header
 * length lies within the file and under 100 MB, the header is a JSON object,
 * every entry has a known dtype, a shape whose byte size (with overflow checks)
 * equals its data_offsets range, every range lies inside the data section, and
 * no two ranges overlap. Errors name the file and the tensor. */
#ifndef SDW_IO_SAFETENSORS_H
#define SDW_IO_SAFETENSORS_H
#include "sdw.h"
#include "core/tensor.h"

#define SDW_ST_MAX_HEADER ((uint64_t)100 << 20)
#define SDW_ST_MAX_DIMS 8

typedef enum {
    SDW_ST_F64, SDW_ST_F32, SDW_ST_F16, SDW_ST_BF16, SDW_ST_I64, SDW_ST_I32, SDW_ST_I16,
    SDW_ST_I8, SDW_ST_U8, SDW_ST_BOOL, SDW_ST_F8_E4M3, SDW_ST_F8_E5M2, SDW_ST_U16, SDW_ST_U32, SDW_ST_U64,
    /* GGUF's block-quantized types (only from .gguf files): blocks of 32 or
     * 256 elements along the last torch dimension (io/quant.h decodes them). */
    SDW_ST_Q4_0, SDW_ST_Q4_1, SDW_ST_Q5_0, SDW_ST_Q5_1, SDW_ST_Q8_0,
    SDW_ST_Q2_K, SDW_ST_Q3_K, SDW_ST_Q4_K, SDW_ST_Q5_K, SDW_ST_Q6_K,
} sdw_st_dtype;

typedef struct {
    const char *name;
    sdw_st_dtype dtype;
    int ndim;
    int64_t shape[SDW_ST_MAX_DIMS];
    int64_t numel;      /* elements (not blocks) */
    uint64_t nbytes;
    const void *data;   /* into the mapping; valid until sdw_st_close */
} sdw_st_tensor;

/* safetensors: the __metadata__ string pairs; GGUF: its string, number and
 * bool KVs (numbers printed, e.g. general.file_type = "7"); GGUF arrays are
 * left out. */
typedef struct {
    const char *key, *value;
} sdw_st_meta;

typedef struct {
    char *path;
    void *map;          /* NULL when parsed from a caller's buffer */
    size_t map_size;
    sdw_st_tensor *tensors;  /* sorted by name */
    int n_tensors;
    sdw_st_meta *meta;       /* see sdw_st_meta */
    int n_meta;
    char *strings;           /* storage for names and metadata */
    /* Set by an owner that keeps the file open as long as what is loaded
     * from it: loaders may then point layers at the mapping instead of
     * copying (compact weights stored as they are computed on). */
    bool keep_mapped;
} sdw_safetensors;

/* Maps and parses the file at path: a GGUF file when it begins with the GGUF
 * magic, safetensors otherwise. Malformed files fail with SDW_ERR_FORMAT; a
 * PyTorch pickle or zip checkpoint (by its content, whatever its name) with
 * SDW_ERR_UNSUPPORTED and a message to convert it. */
sdw_status sdw_st_open(const char *path, sdw_safetensors **out);
/* Parses a safetensors or GGUF image already in memory (not copied: buf must
 * outlive the result). name is used in error messages. */
sdw_status sdw_st_parse(const void *buf, size_t size, const char *name, sdw_safetensors **out);
void sdw_st_close(sdw_safetensors *st);
/* For the parsers (safetensors.c, gguf.c): sorts st's tensors by name and
 * fails, naming file, if a name appears twice or two data ranges overlap. */
sdw_status sdw_st_finish(sdw_safetensors *st, const char *file);

const sdw_st_tensor *sdw_st_find(const sdw_safetensors *st, const char *name);
const char *sdw_st_meta_get(const sdw_safetensors *st, const char *key);
const char *sdw_st_dtype_name(sdw_st_dtype t);
/* Bytes per element of a plain dtype; 0 for a block type (whose elements
 * have no byte size of their own: use sdw_st_dtype_block). */
size_t sdw_st_dtype_size(sdw_st_dtype t);
/* Elements per block (1 for plain dtypes, 32 or 256 for GGUF block types),
 * and the bytes of one block in *block_bytes (may be NULL); 0 for an unknown
 * value. A tensor of numel elements (a multiple of the block) takes
 * numel / block * block_bytes bytes. */
size_t sdw_st_dtype_block(sdw_st_dtype t, size_t *block_bytes);

/* Converts a float tensor to f32 into dst (numel floats): F32, F16, BF16,
 * F8_E4M3, F8_E5M2 and the GGUF block types. Other dtypes:
 * SDW_ERR_UNSUPPORTED naming the dtype and tensor. */
sdw_status sdw_st_read_f32(const sdw_safetensors *st, const sdw_st_tensor *t, float *dst);
/* Finds name and returns a newly allocated f32 tensor (ndim <= 4). */
sdw_status sdw_st_load_f32(const sdw_safetensors *st, const char *name, sdw_tensor *out);
/* Drops the mapped pages holding a tensor from memory once its data has been
 * converted (they would otherwise count in RSS until close: the whole file
 * on top of the converted weights). Reading it again re-reads the file. */
void sdw_st_release(const sdw_safetensors *st, const sdw_st_tensor *t);
/* The same for the whole mapping: every page goes back to the system (and
 * is read again from the file on its next use). */
void sdw_st_page_out(const sdw_safetensors *st);
/* Reads an integer tensor (I64/I32) into a malloc'd int64 array. */
sdw_status sdw_st_read_i64(const sdw_safetensors *st, const sdw_st_tensor *t, int64_t **out);
#endif
