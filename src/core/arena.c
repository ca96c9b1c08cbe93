/* arena.c: chunked bump allocator (see arena.h). */
#include "core/arena.h"
#include <stdlib.h>

struct sdw_arena_chunk {
    sdw_arena_chunk *next;
    size_t size, used;
    unsigned char *data;
};

#define ARENA_ALIGN 64
#define ARENA_MIN_CHUNK ((size_t)64 << 20)

void *sdw_arena_alloc(sdw_arena *a, size_t bytes)
{
    bytes = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    sdw_arena_chunk *c = a->chunks;
    /* Reuse a later (already allocated) chunk after a reset before growing. */
    if (!c || c->size - c->used < bytes) {
        size_t size = bytes > ARENA_MIN_CHUNK ? bytes : ARENA_MIN_CHUNK;
        c = malloc(sizeof *c);
        if (!c) return NULL;
        c->data = aligned_alloc(ARENA_ALIGN, size);
        if (!c->data) { free(c); return NULL; }
        c->size = size;
        c->used = 0;
        c->next = a->chunks;
        a->chunks = c;
    }
    void *p = c->data + c->used;
    c->used += bytes;
    a->used_total += bytes;
    if (a->used_total > a->peak) a->peak = a->used_total;
    return p;
}

float *sdw_arena_floats(sdw_arena *a, size_t n) { return sdw_arena_alloc(a, n * sizeof(float)); }

sdw_arena_mark sdw_arena_save(const sdw_arena *a)
{
    sdw_arena_mark m = { a->chunks, a->chunks ? a->chunks->used : 0, a->used_total };
    return m;
}

void sdw_arena_restore(sdw_arena *a, sdw_arena_mark m)
{
    /* Chunks added after the mark are freed: only the newest chunk is ever
     * bumped from, so emptied chunks left in the list would never be used
     * again this pass and every later block would malloc a new one. The peak
     * is kept, and the next reset allocates one chunk that holds it. */
    sdw_arena_chunk *c = a->chunks;
    while (c && c != m.chunk) {
        sdw_arena_chunk *next = c->next;
        free(c->data);
        free(c);
        c = next;
    }
    a->chunks = c;
    if (m.chunk) m.chunk->used = m.used;
    a->used_total = m.used_total;
}

void sdw_arena_reset(sdw_arena *a)
{
    /* After a pass that needed several chunks, replace them by one chunk big
     * enough for the peak, so steady state is a single allocation. */
    size_t n = 0;
    for (sdw_arena_chunk *c = a->chunks; c; c = c->next) n++;
    if (n > 1 || (a->peak && (!a->chunks || a->chunks->size < a->peak))) {
        size_t peak = a->peak;
        sdw_arena_free(a);
        a->peak = peak;
        void *p = sdw_arena_alloc(a, peak);
        (void)p;
    }
    for (sdw_arena_chunk *c = a->chunks; c; c = c->next) c->used = 0;
    a->used_total = 0;
}

void sdw_arena_free(sdw_arena *a)
{
    sdw_arena_chunk *c = a->chunks;
    while (c) {
        sdw_arena_chunk *next = c->next;
        free(c->data);
        free(c);
        c = next;
    }
    a->chunks = NULL;
    a->used_total = 0;
    a->peak = 0;
}

size_t sdw_arena_held(const sdw_arena *a)
{
    size_t n = 0;
    for (const sdw_arena_chunk *c = a->chunks; c; c = c->next) n += c->size;
    return n;
}
