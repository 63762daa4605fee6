/*
 * The event loop's registration record: epoll(7) carries a pointer to a tl_watch, and the loop
 * calls its handler with the ready events. Used only on the event loop thread.
 */
#ifndef TL_LOOP_H
#define TL_LOOP_H

#include <stdint.h>
#include <sys/epoll.h>

struct tl_watch {
    int fd;
    void (*on_ready)(struct tl_watch *w, uint32_t events);
};

static inline int tl_loop_add(int epfd, struct tl_watch *w, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, w->fd, &ev);
}

static inline int tl_loop_mod(int epfd, struct tl_watch *w, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(epfd, EPOLL_CTL_MOD, w->fd, &ev);
}

static inline int tl_loop_del(int epfd, struct tl_watch *w)
{
    return epoll_ctl(epfd, EPOLL_CTL_DEL, w->fd, NULL);
}

#endif
