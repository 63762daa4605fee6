/* Picks a loopback TCP port for a test or benchmark agent to listen on. */
#ifndef TWINLANE_BENCH_FREEPORT_H
#define TWINLANE_BENCH_FREEPORT_H

/*
 * Returns a port that nothing listens on at 127.0.0.1, or 0 when none is free. The port lies
 * below the kernel's ephemeral range (net.ipv4.ip_local_port_range), so no outgoing
 * connection and no bind to port 0 can take it before the agent listens there. The search
 * starts at a port derived from the process id, so that tests running side by side try
 * different ports first.
 */
int tl_free_loopback_port(void);

#endif
