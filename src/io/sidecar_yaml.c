/* sidecar_yaml.c: see sidecar_yaml.h. libyaml's event parser, with a stack of
 * path components; anchors and aliases are not followed (configs don't use them). */
#include "io/sidecar_yaml.h"
#include "core/error.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#define MAX_DEPTH 32

typedef struct {
    char path[1024];
    size_t len[MAX_DEPTH + 1];  /* path length at each depth */
    bool is_seq[MAX_DEPTH + 1];
    int seq_index[MAX_DEPTH + 1];
    bool want_key[MAX_DEPTH + 1];
    int depth;
} walker;

static sdw_status put(sdw_yaml_map *m, const char *key, const char *value)
{
    if (m->n == m->cap) {
        int cap = m->cap ? m->cap * 2 : 64;
        char **k = realloc(m->keys, (size_t)cap * sizeof *k);
        if (!k) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        m->keys = k;
        char **v = realloc(m->values, (size_t)cap * sizeof *v);
        if (!v) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        m->values = v;
        m->cap = cap;
    }
    m->keys[m->n] = strdup(key);
    m->values[m->n] = strdup(value);
    if (!m->keys[m->n] || !m->values[m->n]) {
        free(m->keys[m->n]);
        free(m->values[m->n]);
        return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    }
    m->n++;
    return SDW_OK;
}

/* Appends a component to the path at the current depth. */
static void push_component(walker *w, const char *comp)
{
    size_t base = w->len[w->depth];
    int k = snprintf(w->path + base, sizeof w->path - base, "%s%s", base ? "." : "", comp);
    (void)k;
}

/* A value (scalar or collection start) arrives at the current depth: in a
 * sequence it takes the next index; in a mapping it follows its key. */
static void name_value(walker *w)
{
    if (w->is_seq[w->depth]) {
        char idx[16];
        snprintf(idx, sizeof idx, "%d", w->seq_index[w->depth]++);
        w->path[w->len[w->depth]] = 0;
        push_component(w, idx);
    }
}

sdw_status sdw_yaml_parse(const char *text, size_t len, const char *name, sdw_yaml_map *out)
{
    memset(out, 0, sizeof *out);
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    walker w = { .depth = 0 };
    w.len[0] = 0;
    w.want_key[0] = true;
    sdw_status s = SDW_OK;
    bool done = false, started = false;
    while (!done && s == SDW_OK) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            s = sdw_fail(SDW_ERR_FORMAT, "%s: yaml error at line %zu: %s", name, p.problem_mark.line + 1,
                         p.problem ? p.problem : "?");
            break;
        }
        switch (ev.type) {
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT:
            if (!started) { /* the document's root collection */
                started = true;
                w.is_seq[0] = ev.type == YAML_SEQUENCE_START_EVENT;
                w.seq_index[0] = 0;
                w.want_key[0] = true;
                break;
            }
            if (w.depth >= MAX_DEPTH) { s = sdw_fail(SDW_ERR_FORMAT, "%s: nested too deeply", name); break; }
            name_value(&w);
            w.depth++;
            w.len[w.depth] = strlen(w.path);
            w.is_seq[w.depth] = ev.type == YAML_SEQUENCE_START_EVENT;
            w.seq_index[w.depth] = 0;
            w.want_key[w.depth] = true;
            if (w.depth > 0 && !w.is_seq[w.depth - 1]) w.want_key[w.depth - 1] = true;
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            if (w.depth > 0) w.depth--;
            w.path[w.len[w.depth]] = 0;
            break;
        case YAML_SCALAR_EVENT: {
            const char *v = (const char *)ev.data.scalar.value;
            if (!started) { done = true; break; } /* a bare scalar document: nothing to map */
            if (!w.is_seq[w.depth] && w.want_key[w.depth]) {
                w.path[w.len[w.depth]] = 0;
                push_component(&w, v);
                w.want_key[w.depth] = false;
            } else {
                name_value(&w);
                s = put(out, w.path, v);
                w.path[w.len[w.depth]] = 0;
                w.want_key[w.depth] = true;
            }
            break;
        }
        case YAML_STREAM_END_EVENT: done = true; break;
        default: break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    if (s != SDW_OK) sdw_yaml_free(out);
    return s;
}

sdw_status sdw_yaml_load(const char *path, sdw_yaml_map *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return sdw_fail(SDW_ERR_IO, "%s: %s", path, strerror(errno));
    char *buf = malloc(SDW_YAML_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, SDW_YAML_MAX_BYTES + 1, f) : 0;
    fclose(f);
    if (!buf) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    sdw_status s = n > SDW_YAML_MAX_BYTES ? sdw_fail(SDW_ERR_FORMAT, "%s: larger than 1 MB", path)
                                           : sdw_yaml_parse(buf, n, path, out);
    free(buf);
    return s;
}

void sdw_yaml_free(sdw_yaml_map *m)
{
    for (int i = 0; i < m->n; i++) {
        free(m->keys[i]);
        free(m->values[i]);
    }
    free(m->keys);
    free(m->values);
    memset(m, 0, sizeof *m);
}

const char *sdw_yaml_get(const sdw_yaml_map *m, const char *path)
{
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->keys[i], path)) return m->values[i];
    return NULL;
}

int sdw_yaml_int(const sdw_yaml_map *m, const char *path, int def)
{
    const char *v = sdw_yaml_get(m, path);
    if (!v) return def;
    char *end;
    long x = strtol(v, &end, 10);
    return (*end || end == v || x < -1000000000L || x > 1000000000L) ? def : (int)x;
}

bool sdw_yaml_sidecar_path(const char *checkpoint, char *buf, size_t n)
{
    const char *dot = strrchr(checkpoint, '.'), *slash = strrchr(checkpoint, '/');
    size_t stem = (dot && (!slash || dot > slash)) ? (size_t)(dot - checkpoint) : strlen(checkpoint);
    if (snprintf(buf, n, "%.*s.yaml", (int)stem, checkpoint) >= (int)n) return false;
    struct stat sb;
    return stat(buf, &sb) == 0 && S_ISREG(sb.st_mode);
}
