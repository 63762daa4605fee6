#include "error.h"

#include <stdarg.h>
#include <stdio.h>

const char *tl_strerror(int code)
{
    switch (code) {
    case TL_OK: return "success";
    case TL_EINVAL: return "invalid input";
    case TL_EIO: return "input/output error";
    case TL_ENOTFOUND: return "not found";
    case TL_EKAFKA: return "kafka error";
    case TL_ETIMEDOUT: return "timed out";
    case TL_ETOOBIG: return "too large";
    case TL_EAGAIN: return "temporarily unavailable";
    case TL_ECLOSED: return "connection closed";
    case TL_EPROTO: return "protocol error";
    default: return "unknown error";
    }
}

int tl_error(char *err, size_t errsize, int code, const char *fmt, ...)
{
    va_list ap;

    if (!err || errsize == 0)
        return code;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
    return code;
}
