/*
 * Allocation wrappers: abort with the caller's location instead of returning NULL.
 */
#include "mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Noreturn void tl_panic_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    fputs("twinlane: fatal: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (%s:%d)\n", file, line);
    abort();
}

void *tl_xmalloc_at(size_t size, const char *file, int line)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        tl_panic_at(file, line, "out of memory allocating %zu bytes", size);
    return p;
}

void *tl_xcalloc_at(size_t count, size_t size, const char *file, int line)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        tl_panic_at(file, line, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *tl_xrealloc_at(void *ptr, size_t size, const char *file, int line)
{
    void *p = realloc(ptr, size ? size : 1);
    if (!p)
        tl_panic_at(file, line, "out of memory reallocating to %zu bytes", size);
    return p;
}

char *tl_xstrdup_at(const char *str, const char *file, int line)
{
    return tl_xmemdup_at(str, strlen(str) + 1, file, line);
}

void *tl_xmemdup_at(const void *ptr, size_t size, const char *file, int line)
{
    void *p = tl_xmalloc_at(size, file, line);
    if (size)
        memcpy(p, ptr, size);
    return p;
}
