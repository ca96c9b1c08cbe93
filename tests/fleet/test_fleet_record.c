/* test_fleet_record.c: the fleet's records on their own (fleet_record.h),
 * without Redis: the --redis URL, a job record and the request it carries
 * in each dialect (the front's seed and model win), the errors a corrupted
 * record gives, a result and a model there and back, and an event entry as
 * its SSE frame. The fleet itself is tested end to end by the node scripts
 * beside this file, against a real redis-server. */
#include "testkit.h"
#include "core/error.h"
#include "server/fleet_record.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

static fleet_field F(const char *name, const char *value)
{
    return (fleet_field){ name, strlen(name), value, strlen(value) };
}

static void test_url(void **state)
{
    (void)state;
    fleet_url u;
    assert_int_equal(fleet_url_parse("redis://127.0.0.1:6380/2", &u), SDW_OK);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    assert_string_equal(u.user, "");
    assert_string_equal(u.pass, "");
    assert_int_equal(fleet_url_parse("redis://redis.internal", &u), SDW_OK);
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_int_equal(fleet_url_parse("redis://alice:p%40ss%3Aword@[::1]:7000", &u), SDW_OK);
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.pass, "p@ss:word");
    assert_string_equal(u.host, "::1");
    char where[300];
    fleet_url_describe(&u, where, sizeof where);
    assert_string_equal(where, "[::1]:7000/0");   /* never the password */
    assert_int_equal(fleet_url_parse("redis://:secret@h:1/", &u), SDW_OK);
    assert_string_equal(u.user, "");
    assert_string_equal(u.pass, "secret");
    assert_int_equal(fleet_url_parse("redis://secret@h", &u), SDW_OK);   /* as redis-cli reads it */
    assert_string_equal(u.pass, "secret");
    static const char *const bad[][2] = {
        { "http://h:6379", "must look like redis://" }, { "redis://", "no host" },
        { "redis://h:0", "port must be" },              { "redis://h:65536", "port must be" },
        { "redis://h:x", "port must be" },              { "redis://h/db", "database after" },
        { "redis://[::1", "unterminated" },             { "redis://u:p%4@h", "bad user or password" },
        { "redis://h h", "bad character" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_not_equal(fleet_url_parse(bad[i][0], &u), SDW_OK);
        if (!strstr(sdw_last_error(), bad[i][1])) fail_msg("%s: %s", bad[i][0], sdw_last_error());
    }
}

static void test_routes(void **state)
{
    (void)state;
    fleet_route r;
    assert_true(fleet_route_of_path("/sdapi/v1/img2img", &r));
    assert_int_equal(r, FLEET_ROUTE_A1111_IMG2IMG);
    assert_false(fleet_route_of_path("/v1/jobs/x", &r));
    for (int i = 0; i < FLEET_ROUTE_COUNT; i++) {
        const char *name = fleet_route_name((fleet_route)i);
        assert_true(fleet_route_parse(name, strlen(name), &r));
        assert_int_equal(r, i);
    }
    assert_true(fleet_id_valid(ID, 36));
    assert_false(fleet_id_valid("0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D", 36));
    assert_false(fleet_id_valid(ID "0", 37));
}

static void test_record_request(void **state)
{
    (void)state;
    sdw_request_limits lim = sdw_request_limits_default();
    fleet_field f[] = { F("id", ID), F("dialect", "native"), F("seed", "1234"), F("model", "sd15/a.safetensors"),
                        F("body", "{\"prompt\":\"a fox\",\"seed\":-1,\"steps\":7,\"model\":\"whatever\"}") };
    fleet_record rec;
    assert_int_equal(fleet_record_parse(f, 5, &rec), SDW_OK);
    assert_string_equal(rec.id, ID);
    assert_int_equal(rec.route, FLEET_ROUTE_NATIVE);
    sdw_job_request r;
    assert_int_equal(fleet_record_request(&rec, &lim, &r), SDW_OK);
    assert_string_equal(r.prompt, "a fox");
    assert_int_equal(r.steps, 7);
    assert_int_equal(r.seed, 1234);                          /* the front's choice */
    assert_string_equal(r.model, "sd15/a.safetensors");      /* the model it routed by */
    sdw_job_request_free(&r);

    /* A1111's model switch keeps the name it was asked for. */
    fleet_field o[] = { F("id", ID), F("dialect", "a1111_options"), F("seed", "-1"),
                        F("body", "{\"sd_model_checkpoint\":\"sd1-tiny [a4f3409780]\"}") };
    assert_int_equal(fleet_record_parse(o, 4, &rec), SDW_OK);
    assert_int_equal(fleet_record_request(&rec, &lim, &r), SDW_OK);
    assert_int_equal(r.kind, SDW_JOB_LOAD_MODEL);
    assert_string_equal(r.model, "sd1-tiny [a4f3409780]");
    sdw_job_request_free(&r);

    /* OpenAI edits: multipart, parsed with the content type it came with. */
    const char *body = "--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nx\r\n--B--\r\n";
    fleet_field e[] = { F("id", ID), F("dialect", "openai_edits"), F("seed", "3"), F("body", body),
                        F("content_type", "multipart/form-data; boundary=B") };
    assert_int_equal(fleet_record_parse(e, 5, &rec), SDW_OK);
    assert_int_not_equal(fleet_record_request(&rec, &lim, &r), SDW_OK);   /* no image: the parser's own error */
    assert_true(strstr(sdw_last_error(), "image") != NULL);
    sdw_job_request_free(&r);
}

static void test_record_errors(void **state)
{
    (void)state;
    struct {
        fleet_field f[5];
        int n;
        const char *says;
    } bad[] = {
        { { F("dialect", "native"), F("body", "{}"), F("seed", "1") }, 3, "no valid id" },
        { { F("id", "not-a-uuid"), F("dialect", "native"), F("body", "{}"), F("seed", "1") }, 4, "no valid id" },
        { { F("id", ID), F("dialect", "comfy"), F("body", "{}"), F("seed", "1") }, 4, "unknown dialect" },
        { { F("id", ID), F("dialect", "native"), F("seed", "1") }, 3, "no body" },
        { { F("id", ID), F("dialect", "native"), F("body", "{}") }, 3, "no seed" },
        { { F("id", ID), F("dialect", "native"), F("body", "{}"), F("seed", "-2") }, 4, "seed '-2' is not in" },
        { { F("id", ID), F("dialect", "native"), F("body", "{}"), F("seed", "9007199254740992") }, 4, "is not in" },
        { { F("id", ID), F("dialect", "openai_edits"), F("body", "x"), F("seed", "1") }, 4, "without its content_type" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fleet_record rec;
        assert_int_not_equal(fleet_record_parse(bad[i].f, bad[i].n, &rec), SDW_OK);
        if (!strstr(sdw_last_error(), bad[i].says)) fail_msg("case %zu: %s", i, sdw_last_error());
    }
    /* A body that no longer parses: the dialect parser's message. */
    sdw_request_limits lim = sdw_request_limits_default();
    fleet_field f[] = { F("id", ID), F("dialect", "native"), F("body", "{not json"), F("seed", "1") };
    fleet_record rec;
    sdw_job_request r;
    assert_int_equal(fleet_record_parse(f, 4, &rec), SDW_OK);
    assert_int_not_equal(fleet_record_request(&rec, &lim, &r), SDW_OK);
    assert_true(sdw_last_error()[0] != 0);
    sdw_job_request_free(&r);
}

static void test_result(void **state)
{
    (void)state;
    uint8_t *bytes[2] = { (uint8_t *)"PNG0", (uint8_t *)"PNG-1" };
    size_t len[2] = { 4, 5 };
    uint64_t seeds[2] = { 42, 43 };
    char *infos[2] = { "a\nSteps: 4", "b" };
    sdw_job_result r = { .n_images = 2, .bytes = bytes, .len = len, .seeds = seeds, .infotexts = infos,
                         .format = SDW_IMAGE_WEBP, .width = 64, .height = 96, .steps = 4, .cfg = 6.5f, .strength = 0.5f,
                         .guidance = 3.5f, .sampler = sdw_sampler_a1111_name(SDW_SAMPLER_EULER),
                         .schedule = sdw_schedule_a1111_name(SDW_SCHEDULE_KARRAS), .seconds = 1.25, .n_loras = 1 };
    snprintf(r.loras[0].name, sizeof r.loras[0].name, "style");
    snprintf(r.loras[0].hash12, sizeof r.loras[0].hash12, "0123456789ab");
    r.loras[0].keys_applied = 3;
    r.loras[0].keys_total = 4;
    char *json = fleet_result_json(&r);
    fleet_field img[2] = { { "", 0, "PNG0", 4 }, { "", 0, "PNG-1", 5 } };
    sdw_job_result back;
    memset(&back, 0, sizeof back);
    assert_int_equal(fleet_result_parse(json, strlen(json), img, 2, &back), SDW_OK);
    assert_int_equal(back.n_images, 2);
    assert_memory_equal(back.bytes[1], "PNG-1", 5);
    assert_int_equal(back.len[1], 5);
    assert_int_equal(back.seeds[1], 43);
    assert_string_equal(back.infotexts[0], "a\nSteps: 4");
    assert_int_equal(back.format, SDW_IMAGE_WEBP);
    assert_int_equal(back.height, 96);
    assert_true(back.sampler == r.sampler && back.schedule == r.schedule);   /* the library's own strings */
    assert_true(fabsf(back.cfg - 6.5f) < 1e-6f && fabsf(back.guidance - 3.5f) < 1e-6f);
    assert_int_equal(back.n_loras, 1);
    assert_string_equal(back.loras[0].hash12, "0123456789ab");
    fleet_result_free(&back);
    /* One image fewer than the seeds say: refused. */
    memset(&back, 0, sizeof back);
    assert_int_not_equal(fleet_result_parse(json, strlen(json), img, 1, &back), SDW_OK);
    fleet_result_free(&back);
    free(json);
}

static void test_model(void **state)
{
    (void)state;
    sdw_engine_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.path, sizeof m.path, "/models/flux.gguf");
    snprintf(m.title, sizeof m.title, "flux.gguf [0123456789]");
    snprintf(m.name, sizeof m.name, "flux.gguf");
    snprintf(m.model_name, sizeof m.model_name, "flux");
    snprintf(m.hash10, sizeof m.hash10, "0123456789");
    m.size_multiple = 16;
    m.info.family = SDW_FAMILY_FLUX_DEV;
    m.info.prediction = SDW_PREDICTION_FLOW;
    m.info.layout = "single-file";
    m.info.denoiser = "flux transformer";
    m.info.default_guidance = 3.5f;
    m.info.default_width = m.info.default_height = 1024;
    m.info.default_steps = 28;
    m.info.default_cfg = 1;
    m.info.default_sampler = "euler";
    m.info.default_scheduler = "simple";
    char *json = fleet_model_json(&m);
    sdw_engine_model back;
    assert_int_equal(fleet_model_parse(json, strlen(json), &back), SDW_OK);
    free(json);
    assert_string_equal(back.title, m.title);
    assert_int_equal(back.size_multiple, 16);
    assert_int_equal(back.info.family, SDW_FAMILY_FLUX_DEV);
    assert_string_equal(back.info.denoiser, "flux transformer");
    assert_string_equal(back.info.default_scheduler, "simple");
    assert_true(fabsf(back.info.default_guidance - 3.5f) < 1e-6f);
    assert_int_not_equal(fleet_model_parse("{\"family\":99}", 13, &back), SDW_OK);
}

static void test_event(void **state)
{
    (void)state;
    fleet_field f[] = { F("event", "progress"), F("data", "{\"step\":3}") };
    char *frame;
    size_t len;
    long long seq;
    bool done;
    assert_int_equal(fleet_event_frame("0-12", 4, f, 2, &frame, &len, &seq, &done), SDW_OK);
    assert_string_equal(frame, "id: 12\nevent: progress\ndata: {\"step\":3}\n\n");
    assert_int_equal(len, strlen(frame));
    assert_int_equal(seq, 12);
    assert_false(done);
    free(frame);
    fleet_field d[] = { F("event", "done"), F("data", "{}") };
    assert_int_equal(fleet_event_frame("0-13", 4, d, 2, &frame, &len, &seq, &done), SDW_OK);
    assert_true(done);
    free(frame);
    fleet_field nl[] = { F("event", "progress"), F("data", "{}\ndata: injected") };
    assert_int_not_equal(fleet_event_frame("0-14", 4, nl, 2, &frame, &len, &seq, &done), SDW_OK);
    assert_int_not_equal(fleet_event_frame("1700000000000-0", 15, f, 2, &frame, &len, &seq, &done), SDW_OK);
    fleet_field name[] = { F("event", "Progress\nx"), F("data", "{}") };
    assert_int_not_equal(fleet_event_frame("0-1", 3, name, 2, &frame, &len, &seq, &done), SDW_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url),    cmocka_unit_test(test_routes), cmocka_unit_test(test_record_request),
        cmocka_unit_test(test_record_errors), cmocka_unit_test(test_result), cmocka_unit_test(test_model),
        cmocka_unit_test(test_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
