/*
 * timeline.svg of a run: throughput and acknowledgement latency per 100 ms, the breaker state
 * of each region from the agent's log, and the fault windows shaded across all of them.
 */
#ifndef TL_CHAOS_SVG_H
#define TL_CHAOS_SVG_H

#include "chaos_load.h"
#include "chaos_result.h"

/* Writes the picture to path. Returns 0, or -1 when the file could not be written. */
int chaos_svg_write(const char *path, const struct chaos_result *r, const struct chaos_load *l);

#endif
