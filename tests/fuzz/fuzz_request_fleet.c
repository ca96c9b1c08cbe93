/* fuzz_request_fleet.c: libFuzzer target for what a fleet reads back from
 * Redis (fleet_record.h), which another process, another version or a
 * crash half-way may have written: a job record and the request it carries
 * (parsed again by its dialect's parser), a finished job's result, a
 * worker's model, an event-stream entry, and the --redis URL. The first
 * byte picks which ('0' to '4'); the rest is split into fields at 0xFF bytes, each
 * "name=value". Any input ends in a value within its limits or an error
 * with a message; nothing leaks. Seeds: corpus/fuzz_request_fleet/. */
#include "fuzz_request_check.h"
#include "server/fleet_record.h"
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FIELDS 32

/* data[0..size) as fields split at 0xFF, each name=value (no '=': a value
 * with an empty name). */
static int split(const uint8_t *data, size_t size, fleet_field *f)
{
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && n < MAX_FIELDS; i++) {
        if (i < size && data[i] != 0xFF) continue;
        const char *p = (const char *)data + start, *eq = memchr(p, '=', i - start);
        f[n++] = eq ? (fleet_field){ p, (size_t)(eq - p), eq + 1, (size_t)((const char *)data + i - eq - 1) }
                    : (fleet_field){ "", 0, p, i - start };
        start = i + 1;
    }
    return n;
}

static void must_fail_with_message(sdw_status s)
{
    if (s != SDW_OK && !sdw_last_error()[0]) abort();
}

static void record(const fleet_field *f, int n)
{
    fleet_record rec;
    sdw_status s = fleet_record_parse(f, n, &rec);
    must_fail_with_message(s);
    if (s != SDW_OK) return;
    if (!fleet_id_valid(rec.id, strlen(rec.id)) || rec.seed < -1 || rec.seed > SDW_REQ_MAX_SEED) abort();
    sdw_request_limits l = fuzz_limits();
    sdw_job_request r;
    s = fleet_record_request(&rec, &l, &r);
    if (s == SDW_OK && rec.seed >= 0 && r.seed != rec.seed) abort();
    if (s == SDW_OK && r.kind == SDW_JOB_LOAD_MODEL) {
        if (!r.model) abort();
        sdw_job_request_free(&r);
        return;
    }
    fuzz_check_request(s, &r, &l);
}

static void result(const fleet_field *f, int n)
{
    sdw_job_result r;
    memset(&r, 0, sizeof r);
    sdw_status s = fleet_result_parse(f[0].value, f[0].len, f + 1, n - 1, &r);
    must_fail_with_message(s);
    if (s == SDW_OK) {
        if (r.n_images != n - 1 || r.n_loras > SDW_REQ_MAX_LORAS || r.width > SDW_REQ_MAX_SIZE) abort();
        for (int i = 0; i < r.n_images; i++)
            if (r.len[i] != f[1 + i].len || !r.infotexts[i]) abort();
        char *json = fleet_result_json(&r);   /* and back */
        free(json);
    }
    fleet_result_free(&r);
}

static void model(const fleet_field *f)
{
    sdw_engine_model m;
    sdw_status s = fleet_model_parse(f[0].value, f[0].len, &m);
    must_fail_with_message(s);
    if (s == SDW_OK) {
        if (m.size_multiple < 1 || !m.info.default_sampler || !m.info.default_scheduler) abort();
        char *json = fleet_model_json(&m);
        free(json);
    }
}

static void event(const fleet_field *f, int n)
{
    char *frame;
    size_t len;
    long long seq;
    bool done;
    sdw_status s = fleet_event_frame(f[0].value, f[0].len, f + 1, n - 1, &frame, &len, &seq, &done);
    must_fail_with_message(s);
    if (s != SDW_OK) return;
    /* One SSE frame: three lines and the blank one, nothing else. */
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += frame[i] == '\n';
    if (len < 4 || memcmp(frame, "id: ", 4) || frame[len - 1] != '\n' || frame[len - 2] != '\n' || lines != 4 || seq < 0)
        abort();
    free(frame);
}

static void url(const uint8_t *data, size_t size)
{
    char text[1024];
    size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, data, n);
    text[n] = 0;
    fleet_url u;
    sdw_status s = fleet_url_parse(text, &u);
    must_fail_with_message(s);
    if (s == SDW_OK && (!u.host[0] || u.port < 1 || u.port > 65535 || u.db < 0)) abort();
    char where[400];
    if (s == SDW_OK) fleet_url_describe(&u, where, sizeof where);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    fleet_field f[MAX_FIELDS];
    int n = split(data + 1, size - 1, f);
    sdw_clear_error();
    switch ((unsigned)(data[0] - '0') % 5) {   /* '0' record, '1' result, '2' model, '3' event, '4' URL */
    case 0: record(f, n); break;
    case 1: result(f, n); break;
    case 2: model(f); break;
    case 3: event(f, n); break;
    default: url(data + 1, size - 1); break;
    }
    return 0;
}
