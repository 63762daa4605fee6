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
#include <stdint.h>

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

/*
 * Bump allocator for short-lived objects that are all released together, such as one decoded
 * request. tl_arena_alloc carves pointers aligned to alignof(max_align_t) out of the newest
 * block and adds a block when that one is full. No allocation is freed on its own. Instead
 * tl_arena_reset releases all of them and keeps a single block large enough for everything
 * allocated since the previous reset, up to keep_max bytes, so repeating a workload of the same
 * size allocates no new block.
 *
 * Under AddressSanitizer the unused part of each block, a redzone after each allocation and
 * everything released by a reset are poisoned, so overflows and use after reset are reported.
 *
 * An arena belongs to one thread at a time. Zero-initialise it or call tl_arena_init.
 */
struct tl_arena_block;

struct tl_arena {
    struct tl_arena_block *blocks;  /* newest first; allocations come from the newest */
    size_t used;                    /* bytes handed out since the last reset, with padding */
    size_t keep_max;                /* largest block a reset keeps; 0 means no limit */
    uint64_t blocks_allocated;      /* blocks malloc'd over the arena's life */
};

/*
 * Prepares an empty arena. A reset keeps no block when more than keep_max bytes were used
 * since the previous reset, so one huge request does not stay allocated. A keep_max of 0 means
 * no limit.
 */
void tl_arena_init(struct tl_arena *a, size_t keep_max);

/* Returns size bytes aligned to alignof(max_align_t), valid until the next reset. Never NULL. */
#define tl_arena_alloc(a, size) tl_arena_alloc_at((a), (size), __FILE__, __LINE__)
void *tl_arena_alloc_at(struct tl_arena *a, size_t size, const char *file, int line);

/* Releases every allocation, keeping one block that fits what they used (see keep_max). */
void tl_arena_reset(struct tl_arena *a);

/* Frees every block. The arena can be used again afterwards, as after tl_arena_init. */
void tl_arena_free(struct tl_arena *a);

/* Prints "twinlane: fatal: <message> (file:line)" to stderr and aborts. */
_Noreturn void tl_panic_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define tl_panic(...) tl_panic_at(__FILE__, __LINE__, __VA_ARGS__)

#endif
