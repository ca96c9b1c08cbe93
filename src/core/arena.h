/* arena.h: bump allocator for the activations of one forward pass. Reset at
 * the start of each pass, so hot loops never call malloc. It grows in chunks
 * when a pass needs more than it has, and keeps them for the next pass. */
#ifndef SDW_CORE_ARENA_H
#define SDW_CORE_ARENA_H
#include <stddef.h>

typedef struct sdw_arena_chunk sdw_arena_chunk;
typedef struct {
    sdw_arena_chunk *chunks;  /* newest first */
    size_t used_total;        /* bytes handed out since the last reset */
    size_t peak;              /* high-water mark over the arena's life */
} sdw_arena;

/* Returns 64-byte aligned memory, or NULL if the system is out of memory. */
void *sdw_arena_alloc(sdw_arena *a, size_t bytes);
float *sdw_arena_floats(sdw_arena *a, size_t n);
/* Marks and rewinds let a block free its scratch when it returns. */
typedef struct { sdw_arena_chunk *chunk; size_t used; size_t used_total; } sdw_arena_mark;
sdw_arena_mark sdw_arena_save(const sdw_arena *a);
void sdw_arena_restore(sdw_arena *a, sdw_arena_mark m);
void sdw_arena_reset(sdw_arena *a);
void sdw_arena_free(sdw_arena *a);
/* Bytes the arena's chunks hold. */
size_t sdw_arena_held(const sdw_arena *a);
#endif
