/*
 * Admin API: HTTP/1.1 (libmicrohttpd) on a Unix socket, and optionally on a loopback TCP port
 * with bearer tokens. It serves status and Prometheus metrics and carries out the control
 * commands of `twinlane`.
 *
 *   GET  /healthz                        200 while the process runs
 *   GET  /readyz                         200 when a breaker is closed and ingest accepts events
 *   GET  /v1/status                      JSON: agent, ingest, WAL, regions, failover timelines
 *   GET  /metrics                        Prometheus text exposition format 0.0.4
 *   POST /v1/regions/{name}/fence        fence one region's breaker
 *   POST /v1/regions/{name}/unfence      lift the fence (the breaker goes to HALF_OPEN)
 *   POST /v1/failover?to=REGION          fence the other region, unfence REGION
 *   POST /v1/failback                    unfence every region
 *   POST /v1/ingest/pause                stop reading producer connections, keep them open
 *   POST /v1/ingest/resume               read them again
 *   POST /v1/drain                       stop accepting, flush, exit (as SIGTERM does)
 * Every POST takes ?dry_run=1, which changes nothing and returns what would change and each
 * region's divergence (WAL next_seq minus the region's cursor).
 *
 * Every control action is logged with who asked: "unix:pid=P,uid=U" from SO_PEERCRED on the
 * Unix socket, "token:NAME" on TCP. Tokens are never logged.
 *
 * Threads: libmicrohttpd runs one internal thread per listener and calls the handlers there.
 * They read region state through the atomics each region publishes, timelines under their own
 * mutex, and ingest state through the snapshot that the event loop publishes with
 * tl_admin_publish (guarded by the admin's mutex). Pausing and resuming ingest, which the
 * event loop owns, is passed to it through an eventfd (tl_admin_request_fd). Drain sends
 * SIGTERM to the process, so it takes the same shutdown path as an operator's signal.
 */
#ifndef TL_ADMIN_H
#define TL_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ingest.h"
#include "pipeline.h"
#include "region.h"
#include "timeline.h"
#include "wal.h"

struct tl_admin;

/* Modules the admin API reads. Every pointer must outlive the admin server. */
struct tl_admin_sources {
    const struct tl_config *cfg;
    struct tl_wal *wal;
    struct tl_pipeline *pipeline;
    struct tl_region **regions;     /* TL_REGION_COUNT */
    struct tl_timeline *timelines;  /* TL_REGION_COUNT */
};

/*
 * Reads the token file (when admin.tcp is set), opens the listeners and starts serving.
 * Returns 0, or TL_EIO / TL_EINVAL with err naming the socket, address or token file line.
 * Main thread.
 */
int tl_admin_open(const struct tl_admin_sources *src, struct tl_admin **out, char *err,
                  size_t errsize);

/* Eventfd that becomes readable when a request for the event loop waits; see tl_admin_apply. */
int tl_admin_request_fd(const struct tl_admin *a);

/* Applies waiting pause and resume requests to ingest, then publishes. Event loop thread. */
void tl_admin_apply(struct tl_admin *a, struct tl_ingest *ing);

/*
 * Copies ingest's counters, the WAL head and the events in flight for the admin threads.
 * accepting is false once shutdown began. Event loop thread; cheap enough for every loop round.
 */
void tl_admin_publish(struct tl_admin *a, struct tl_ingest *ing, bool accepting);

/* Stops the listeners (waiting for their threads), removes the socket file, frees. NULL ok. */
void tl_admin_close(struct tl_admin *a);

#endif
