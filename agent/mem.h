/*
 * Allocation wrappers that never return NULL.
 *
 * twinlane treats running out of memory as fatal: every wrapper prints the failed request
 * size with the caller's file and line and aborts, so callers need no NULL checks. Buffers
 * whose size comes from the network or from disk must be checked against a hard cap before
 * they reach these functions.
 */
#ifndef TL_MEM_H
#define TL_MEM_H

#include <stddef.h>

#define tl_xmalloc(size) tl_xmalloc_at((size), __FILE__, __LINE__)
#define tl_xcalloc(count, size) tl_xcalloc_at((count), (size), __FILE__, __LINE__)
#define tl_xrealloc(ptr, size) tl_xrealloc_at((ptr), (size), __FILE__, __LINE__)
#define tl_xstrdup(str) tl_xstrdup_at((str), __FILE__, __LINE__)
#define tl_xmemdup(ptr, size) tl_xmemdup_at((ptr), (size), __FILE__, __LINE__)

void *tl_xmalloc_at(size_t size, const char *file, int line);
void *tl_xcalloc_at(size_t count, size_t size, const char *file, int line);
void *tl_xrealloc_at(void *ptr, size_t size, const char *file, int line);
char *tl_xstrdup_at(const char *str, const char *file, int line);
void *tl_xmemdup_at(const void *ptr, size_t size, const char *file, int line);

/* Prints "twinlane: fatal: <message> (file:line)" to stderr and aborts. */
_Noreturn void tl_panic_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define tl_panic(...) tl_panic_at(__FILE__, __LINE__, __VA_ARGS__)

#endif
