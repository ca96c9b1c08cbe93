/* test_safetensors.c: the reader on real files. */
#include "testkit.h"
#include <stdlib.h>

static void reads_reference_file(void **state)
{
    (void)state;
    sdw_safetensors *st = test_open_st("rng.safetensors");
    assert_true(st->n_tensors > 10);
    sdw_st_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(reads_reference_file) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
