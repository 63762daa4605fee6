/*
 * Allocation wrappers that abort with the caller's location instead of returning NULL, and the
 * bump arena built on them.
 */
#include "mem.h"

#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define TL_ARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TL_ARENA_ASAN 1
#endif
#endif

#ifdef TL_ARENA_ASAN
#include <sanitizer/asan_interface.h>
/* Poisoned bytes after each allocation, so that an overflow of a few bytes is reported. */
#define ARENA_REDZONE ARENA_ALIGN
#else
#define ASAN_POISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define ARENA_REDZONE 0
#endif

#define ARENA_ALIGN alignof(max_align_t)
/* Data bytes of an arena's first block. */
#define ARENA_MIN_BLOCK 4096

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

struct tl_arena_block {
    struct tl_arena_block *next;
    size_t cap;           /* data bytes */
    size_t used;          /* data bytes handed out */
    max_align_t data[];   /* the member's type aligns the data for any object */
};

void tl_arena_init(struct tl_arena *a, size_t keep_max)
{
    *a = (struct tl_arena){.keep_max = keep_max};
}

/* Returns the smallest power of two that is at least n and at least ARENA_MIN_BLOCK. */
static size_t arena_block_size(size_t n)
{
    size_t size = ARENA_MIN_BLOCK;
    while (size < n)
        size *= 2;
    return size;
}

/* Allocates a block with cap data bytes, all poisoned, and makes it the newest. */
static void arena_add_block(struct tl_arena *a, size_t cap, const char *file, int line)
{
    struct tl_arena_block *b = tl_xmalloc_at(sizeof(*b) + cap, file, line);
    b->next = a->blocks;
    b->cap = cap;
    b->used = 0;
    ASAN_POISON_MEMORY_REGION(b->data, cap);
    a->blocks = b;
    a->blocks_allocated++;
}

void *tl_arena_alloc_at(struct tl_arena *a, size_t size, const char *file, int line)
{
    /* The bound keeps the rounding below and the block sizes from overflowing. */
    if (size > SIZE_MAX / 4)
        tl_panic_at(file, line, "arena allocation of %zu bytes is too large", size);
    size_t padded = ((size ? size : 1) + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    size_t need = padded + ARENA_REDZONE;

    struct tl_arena_block *b = a->blocks;
    if (!b || b->cap - b->used < need) {
        /* Doubling the block size keeps the block count logarithmic in the bytes used. */
        size_t want = need;
        if (b && b->cap <= SIZE_MAX / 4 && b->cap * 2 > want)
            want = b->cap * 2;
        arena_add_block(a, arena_block_size(want), file, line);
        b = a->blocks;
    }

    unsigned char *p = (unsigned char *)b->data + b->used;
    b->used += need;
    a->used += need;
    ASAN_UNPOISON_MEMORY_REGION(p, size);
    return p;
}

void tl_arena_reset(struct tl_arena *a)
{
    struct tl_arena_block *b = a->blocks;
    size_t used = a->used;

    a->used = 0;
    if (!b)
        return;
    if (!b->next && (a->keep_max == 0 || b->cap <= a->keep_max)) {
        b->used = 0;
        ASAN_POISON_MEMORY_REGION(b->data, b->cap);
        return;
    }

    /*
     * Several blocks, or one above keep_max, are replaced by one block that fits the same
     * allocations again. Each allocation is a multiple of ARENA_ALIGN, so a block of `used`
     * bytes fits them back to back.
     */
    tl_arena_free(a);
    if (used == 0 || (a->keep_max != 0 && used > a->keep_max))
        return;
    size_t cap = arena_block_size(used);
    if (a->keep_max != 0 && cap > a->keep_max)
        cap = used;
    arena_add_block(a, cap, __FILE__, __LINE__);
}

void tl_arena_free(struct tl_arena *a)
{
    struct tl_arena_block *b = a->blocks;
    while (b) {
        struct tl_arena_block *next = b->next;
        ASAN_UNPOISON_MEMORY_REGION(b->data, b->cap);
        free(b);
        b = next;
    }
    a->blocks = NULL;
    a->used = 0;
}
