/*
 * Hand-written SVG 1.1 with no scripts or external resources, so any browser shows it.
 *
 * Layout, top to bottom: title, throughput panel (events sent for the first time and events
 * acknowledged, per second, in 100 ms buckets), latency panel (median and maximum time from
 * first send to OK of the events acknowledged in each bucket, logarithmic scale), one lane
 * per region with its breaker state, and the time axis in seconds since the load started.
 */
#include "chaos_svg.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <twinlane/client.h>

#include "mem.h"

#define BUCKET_MS 100
#define WIDTH 1200
#define LEFT 80
#define RIGHT 30
#define PLOT_WIDTH (WIDTH - LEFT - RIGHT)
#define THROUGHPUT_TOP 76
#define THROUGHPUT_HEIGHT 180
#define LATENCY_TOP 306
#define LATENCY_HEIGHT 160
#define LANES_TOP 506
#define LANE_HEIGHT 26
#define AXIS_TOP (LANES_TOP + 2 * (LANE_HEIGHT + 8) + 4)
#define HEIGHT (AXIS_TOP + 70)

struct scale {
    int64_t start_ms, end_ms;
};

static double x_of(const struct scale *s, int64_t ms)
{
    double t = (double)(ms - s->start_ms) / (double)(s->end_ms - s->start_ms);
    if (t < 0)
        t = 0;
    if (t > 1)
        t = 1;
    return LEFT + t * PLOT_WIDTH;
}

static int compare_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Escapes text for an SVG text node. */
static void put_text(FILE *f, const char *text)
{
    for (const char *p = text; *p; p++) {
        switch (*p) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*p, f);
        }
    }
}

static void polyline(FILE *f, const double *values, size_t n, const struct scale *s,
                     double top, double height, double max, const char *color)
{
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", color);
    for (size_t i = 0; i < n; i++) {
        double x = x_of(s, s->start_ms + (int64_t)i * BUCKET_MS + BUCKET_MS / 2);
        double y = top + height - (max > 0 ? values[i] / max : 0) * height;
        fprintf(f, "%.1f,%.1f ", x, y);
    }
    fprintf(f, "\"/>\n");
}

static double latency_y(double ms, double max_ms)
{
    /* Logarithmic from 1 ms at the bottom to max_ms at the top. */
    double v = ms < 1 ? 1 : ms;
    return LATENCY_TOP + LATENCY_HEIGHT - log10(v) / log10(max_ms) * LATENCY_HEIGHT;
}

static const char *state_color(const char *state)
{
    if (strstr(state, "backfilling"))
        return "#42a5f5";
    /* The agent logs the states in lower case; accept either. */
    if (strncasecmp(state, "closed", 6) == 0)
        return "#66bb6a";
    if (strncasecmp(state, "half_open", 9) == 0)
        return "#ffa726";
    if (strncasecmp(state, "open", 4) == 0)
        return "#ef5350";
    return "#bdbdbd";
}

static void draw_faults(FILE *f, const struct chaos_result *r, const struct scale *s)
{
    int64_t load_end = r->started_ms + r->scenario->duration_ms;
    /* Labels of faults that start close together go one line lower each, up to three lines. */
    double last_label_x = -1000;
    int label_line = 0;
    for (size_t k = 0; k < r->plan->count; k++) {
        const struct chaos_fault_run *run = &r->plan->runs[k];
        if (run->injected_ms == 0)
            continue;
        int64_t end = run->healed_ms ? run->healed_ms : load_end;
        double x0 = x_of(s, run->injected_ms), x1 = x_of(s, end);
        if (x1 - x0 < 2)
            x1 = x0 + 2;
        const char *fill = run->outcome == CHAOS_FAULT_DONE ? "#9e9e9e" : "#ffeb3b";
        fprintf(f, "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\" "
                "fill-opacity=\"0.22\"/>\n", x0, THROUGHPUT_TOP - 14, x1 - x0,
                AXIS_TOP - THROUGHPUT_TOP + 14, fill);
        /* Label every fault only when there is room; repeated faults would overprint. */
        if (r->plan->count <= 8 || k == 0) {
            char label[96];
            snprintf(label, sizeof(label), "%s %s%s", chaos_action_name(run->fault->action),
                     run->fault->region >= 0 ? CHAOS_REGION_NAMES[run->fault->region] : "agent",
                     r->plan->count > 8 ? " (each grey band)" : "");
            label_line = x0 - last_label_x < 120 ? (label_line + 1) % 3 : 0;
            last_label_x = x0;
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" fill=\"#424242\">", x0 + 2,
                    THROUGHPUT_TOP - 4 + 12 * label_line);
            put_text(f, label);
            fprintf(f, "</text>\n");
        }
    }
}

static void draw_lanes(FILE *f, const struct chaos_result *r, const struct scale *s)
{
    for (int g = 0; g < 2; g++) {
        int top = LANES_TOP + g * (LANE_HEIGHT + 8);
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"end\">%s</text>\n",
                LEFT - 6, top + LANE_HEIGHT / 2 + 4, CHAOS_REGION_NAMES[g]);
        const char *state = "CLOSED";
        int64_t since = s->start_ms;
        for (size_t i = 0; i <= r->log.transition_count; i++) {
            const struct chaos_transition *t =
                i < r->log.transition_count ? &r->log.transitions[i] : NULL;
            if (t && t->region != g)
                continue;
            int64_t until = t ? t->at_ms : s->end_ms;
            if (until > since) {
                double x0 = x_of(s, since), x1 = x_of(s, until);
                fprintf(f, "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\">"
                        "<title>", x0, top, x1 - x0 > 0.5 ? x1 - x0 : 0.5, LANE_HEIGHT,
                        state_color(state));
                put_text(f, state);
                fprintf(f, "</title></rect>\n");
            }
            if (t) {
                state = t->to;
                since = t->at_ms > since ? t->at_ms : since;
            }
        }
    }
    static const char *const legend[][2] = {{"CLOSED", "#66bb6a"}, {"OPEN", "#ef5350"},
                                            {"HALF_OPEN", "#ffa726"},
                                            {"backfilling", "#42a5f5"},
                                            {"fault window", "#9e9e9e"}};
    for (size_t i = 0; i < sizeof(legend) / sizeof(legend[0]); i++) {
        int x = LEFT + (int)i * 130;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"%s/>"
                "<text x=\"%d\" y=\"%d\" font-size=\"12\">%s</text>\n", x, AXIS_TOP + 38,
                legend[i][1], i == 4 ? " fill-opacity=\"0.4\"" : "", x + 16, AXIS_TOP + 48,
                legend[i][0]);
    }
}

static void draw_axis(FILE *f, const struct scale *s)
{
    double seconds = (double)(s->end_ms - s->start_ms) / 1000;
    double step = 60;
    if (seconds <= 20)
        step = 1;
    else if (seconds <= 60)
        step = 5;
    else if (seconds <= 300)
        step = 15;
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#616161\"/>\n", LEFT,
            AXIS_TOP, LEFT + PLOT_WIDTH, AXIS_TOP);
    for (double t = 0; t <= seconds + 1e-9; t += step) {
        double x = x_of(s, s->start_ms + (int64_t)(t * 1000));
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#616161\"/>"
                "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%g</text>\n",
                x, AXIS_TOP, x, AXIS_TOP + 5, x, AXIS_TOP + 18, t);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#eeeeee\"/>\n", x,
                THROUGHPUT_TOP, x, LATENCY_TOP + LATENCY_HEIGHT);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">seconds since "
            "the load started</text>\n", LEFT + PLOT_WIDTH / 2, AXIS_TOP + 32);
}

int chaos_svg_write(const char *path, const struct chaos_result *r, const struct chaos_load *l)
{
    int64_t end = r->started_ms + r->scenario->duration_ms;
    for (size_t i = 0; i < l->total; i++) {
        if (l->events[i].status == TL_CLIENT_OK && l->events[i].ack_ms > end)
            end = l->events[i].ack_ms;
    }
    struct scale s = {.start_ms = r->started_ms, .end_ms = end + 500};
    size_t buckets = (size_t)((s.end_ms - s.start_ms) / BUCKET_MS) + 1;
    double *sent = tl_xcalloc(buckets, sizeof(double));
    double *acked = tl_xcalloc(buckets, sizeof(double));
    double *p50 = tl_xcalloc(buckets, sizeof(double));
    double *pmax = tl_xcalloc(buckets, sizeof(double));
    size_t *counts = tl_xcalloc(buckets + 1, sizeof(size_t));

    /* Latencies grouped by acknowledgement bucket, for the per-bucket median. */
    for (size_t i = 0; i < l->total; i++) {
        const struct chaos_event *e = &l->events[i];
        if (e->attempts > 0 && e->first_send_ms >= s.start_ms)
            sent[(size_t)(e->first_send_ms - s.start_ms) / BUCKET_MS] += 1000.0 / BUCKET_MS;
        if (e->status == TL_CLIENT_OK && e->ack_ms >= s.start_ms)
            counts[(size_t)(e->ack_ms - s.start_ms) / BUCKET_MS + 1]++;
    }
    for (size_t b = 1; b <= buckets; b++)
        counts[b] += counts[b - 1];
    int64_t *lat = tl_xcalloc(counts[buckets] + 1, sizeof(int64_t));
    size_t *fill = tl_xcalloc(buckets, sizeof(size_t));
    for (size_t i = 0; i < l->total; i++) {
        const struct chaos_event *e = &l->events[i];
        if (e->status != TL_CLIENT_OK || e->ack_ms < s.start_ms)
            continue;
        size_t b = (size_t)(e->ack_ms - s.start_ms) / BUCKET_MS;
        lat[counts[b] + fill[b]++] = e->ack_ms - e->first_send_ms;
    }
    double max_rate = 1, max_latency = 10;
    for (size_t b = 0; b < buckets; b++) {
        size_t n = counts[b + 1] - counts[b];
        acked[b] = (double)n * 1000.0 / BUCKET_MS;
        if (n > 0) {
            qsort(lat + counts[b], n, sizeof(int64_t), compare_int64);
            p50[b] = (double)lat[counts[b] + n / 2];
            pmax[b] = (double)lat[counts[b] + n - 1];
        }
        max_rate = fmax(max_rate, fmax(sent[b], acked[b]));
        max_latency = fmax(max_latency, pmax[b]);
    }
    /* Round the rate scale up to 1, 2 or 5 times a power of ten, so the labels read well. */
    double magnitude = pow(10, floor(log10(max_rate * 1.05)));
    double nice = magnitude;
    while (nice < max_rate * 1.05)
        nice += magnitude;
    max_rate = nice;
    /* Round the latency scale up to a power of ten so the grid lines are 1, 10, 100 ms ... */
    max_latency = pow(10, ceil(log10(max_latency)));

    int rc = -1;
    FILE *f = fopen(path, "w");
    if (!f)
        goto out;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", WIDTH, HEIGHT, WIDTH,
            HEIGHT);
    fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"16\" font-weight=\"bold\">", LEFT);
    char title[256];
    snprintf(title, sizeof(title), "twinlane-chaos %s: %s, %zu events, %zu acknowledged",
             r->scenario->name, chaos_verdict_name(r->verdict), r->events, r->acknowledged);
    put_text(f, title);
    fprintf(f, "</text>\n");

    draw_faults(f, r, &s);

    /* Throughput panel. */
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
            "stroke=\"#bdbdbd\"/>\n", LEFT, THROUGHPUT_TOP, PLOT_WIDTH, THROUGHPUT_HEIGHT);
    for (int i = 0; i <= 4; i++) {
        double v = max_rate * i / 4;
        double y = THROUGHPUT_TOP + THROUGHPUT_HEIGHT - (double)THROUGHPUT_HEIGHT * i / 4;
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.0f</text>\n",
                LEFT - 6, y + 4, v);
    }
    fprintf(f, "<text x=\"16\" y=\"%d\" font-size=\"12\" transform=\"rotate(-90 16 %d)\" "
            "text-anchor=\"middle\">events/s</text>\n", THROUGHPUT_TOP + THROUGHPUT_HEIGHT / 2,
            THROUGHPUT_TOP + THROUGHPUT_HEIGHT / 2);
    polyline(f, sent, buckets, &s, THROUGHPUT_TOP, THROUGHPUT_HEIGHT, max_rate, "#90a4ae");
    polyline(f, acked, buckets, &s, THROUGHPUT_TOP, THROUGHPUT_HEIGHT, max_rate, "#1e88e5");
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" fill=\"#1e88e5\">acknowledged (OK) per "
            "second</text><text x=\"%d\" y=\"%d\" font-size=\"12\" fill=\"#78909c\">sent for "
            "the first time per second</text>\n", LEFT + PLOT_WIDTH - 420,
            THROUGHPUT_TOP - 22, LEFT + PLOT_WIDTH - 220, THROUGHPUT_TOP - 22);

    /* Latency panel. */
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
            "stroke=\"#bdbdbd\"/>\n", LEFT, LATENCY_TOP, PLOT_WIDTH, LATENCY_HEIGHT);
    for (double v = 1; v <= max_latency * 1.01; v *= 10) {
        double y = latency_y(v, max_latency);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#eeeeee\"/>"
                "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%s%g %s</text>\n",
                LEFT, y, LEFT + PLOT_WIDTH, y, LEFT - 6, y + 4, "", v >= 1000 ? v / 1000 : v,
                v >= 1000 ? "s" : "ms");
    }
    fprintf(f, "<text x=\"16\" y=\"%d\" font-size=\"12\" transform=\"rotate(-90 16 %d)\" "
            "text-anchor=\"middle\">ack latency</text>\n", LATENCY_TOP + LATENCY_HEIGHT / 2,
            LATENCY_TOP + LATENCY_HEIGHT / 2);
    const char *colors[2] = {"#8e24aa", "#43a047"};
    const double *series[2] = {pmax, p50};
    for (int k = 0; k < 2; k++) {
        fprintf(f, "<g fill=\"%s\">", colors[k]);
        for (size_t b = 0; b < buckets; b++) {
            if (counts[b + 1] == counts[b])
                continue;
            double x = x_of(&s, s.start_ms + (int64_t)b * BUCKET_MS + BUCKET_MS / 2);
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"1.6\"/>", x,
                    latency_y(series[k][b], max_latency));
        }
        fprintf(f, "</g>\n");
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" fill=\"#8e24aa\">maximum per 100 ms"
            "</text><text x=\"%d\" y=\"%d\" font-size=\"12\" fill=\"#43a047\">median per 100 ms "
            "(from first send to OK)</text>\n", LEFT + PLOT_WIDTH - 420, LATENCY_TOP - 8,
            LEFT + PLOT_WIDTH - 280, LATENCY_TOP - 8);

    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\">breaker state (agent log)</text>\n",
            LEFT, LANES_TOP - 8);
    draw_lanes(f, r, &s);
    draw_axis(f, &s);
    fprintf(f, "</svg>\n");
    rc = fclose(f) == 0 ? 0 : -1;
out:
    free(sent);
    free(acked);
    free(p50);
    free(pmax);
    free(counts);
    free(lat);
    free(fill);
    return rc;
}
