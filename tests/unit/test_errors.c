/* test_errors.c — every return code has a distinct name and a message. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "evstore.h"

static void test_library_codes_have_names_and_messages(void **state)
{
    (void)state;
    const int codes[] = {
#define EVS__CODE(name, value, sname, msg) name,
        EVS_ERROR_LIST(EVS__CODE)
#undef EVS__CODE
    };
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        assert_string_not_equal(evs_errname(codes[i]), "unknown");
        for (size_t j = i + 1; j < n; j++)
            assert_string_not_equal(evs_errname(codes[i]), evs_errname(codes[j]));
    }
    assert_string_equal(evs_errname(EVS_ECONFLICT), "wrong_expected_version");
}

static void test_errno_codes(void **state)
{
    (void)state;
    assert_string_equal(evs_errname(-EIO), "EIO");
    assert_string_equal(evs_errname(-ENOSPC), "ENOSPC");
    assert_string_equal(evs_strerror(-ENOSPC), strerror(ENOSPC));
    assert_string_equal(evs_errname(-99999), "unknown");
    assert_int_equal(evs_version_number(), EVS_VERSION_NUMBER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_library_codes_have_names_and_messages),
        cmocka_unit_test(test_errno_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
