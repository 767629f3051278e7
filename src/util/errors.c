/*
 * errors.c — names and messages for every return code: the library's own
 * (generated from EVS_ERROR_LIST, so they cannot drift) and -errno.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "evs_int.h"

int evs_version_number(void) { return EVS_VERSION_NUMBER; }

const char *evs_version_string(void)
{
#define EVS__STR2(x) #x
#define EVS__STR(x) EVS__STR2(x)
    return EVS__STR(EVS_VERSION_MAJOR) "." EVS__STR(EVS_VERSION_MINOR) "." EVS__STR(EVS_VERSION_PATCH);
}

const char *evs_strerror(int rc)
{
    switch (rc) {
#define EVS__MSG(name, value, sname, msg) case value: return msg;
        EVS_ERROR_LIST(EVS__MSG)
#undef EVS__MSG
    default: break;
    }
    if (rc < 0 && rc > -4096)
        return strerror(-rc);  /* glibc's table is static: safe to return */
    return "unknown error";
}

const char *evs_errname(int rc)
{
    switch (rc) {
#define EVS__NAME(name, value, sname, msg) case value: return sname;
        EVS_ERROR_LIST(EVS__NAME)
#undef EVS__NAME
    default: break;
    }
    if (rc < 0 && rc > -4096) {
        const char *n = strerrorname_np(-rc);
        if (n) return n;
    }
    return "unknown";
}
