/*
 * twinlane's one error vocabulary.
 *
 * Functions that can fail return 0 on success or a negative TL_E* code, and write a sentence
 * for a person into a caller-supplied buffer (char *err, size_t errsize) where one is taken.
 */
#ifndef TL_ERROR_H
#define TL_ERROR_H

#include <stddef.h>

enum tl_error {
    TL_OK = 0,
    TL_EINVAL = -1,    /* invalid argument, setting or input */
    TL_EIO = -2,       /* a system call failed; errno-derived text in the message */
    TL_ENOTFOUND = -3, /* a named thing (file, topic, region) does not exist */
    TL_EKAFKA = -4,    /* librdkafka reported an error */
    TL_ETIMEDOUT = -5, /* a bounded wait ran out */
    TL_ETOOBIG = -6,   /* input exceeds a configured size limit */
    TL_EAGAIN = -7,    /* temporarily impossible; retry later */
    TL_ECLOSED = -8,   /* the peer closed the connection */
    TL_EPROTO = -9,    /* the peer broke the wire protocol */
};

/* Returns a static, lower-case description of a TL_E* code. */
const char *tl_strerror(int code);

/*
 * Formats a message into err (if err is non-NULL) and returns code, so error paths read
 * `return tl_error(err, errsize, TL_EINVAL, "...", ...);`.
 */
int tl_error(char *err, size_t errsize, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
