/*
 * Reports of a run in its output directory: summary.txt (also printed to stdout),
 * report.json, and timeline.svg (chaos_svg.h).
 */
#ifndef TL_CHAOS_REPORT_H
#define TL_CHAOS_REPORT_H

#include <stdio.h>

#include "chaos_load.h"
#include "chaos_result.h"

/* Writes the readable summary to out. */
void chaos_report_summary(FILE *out, const struct chaos_result *r);

/*
 * Writes summary.txt and report.json into dir and prints the summary to stdout. Returns 0, or
 * -1 when a file could not be written (the message goes to stderr).
 */
int chaos_report_write(const char *dir, const struct chaos_result *r, const struct chaos_load *l);

#endif
