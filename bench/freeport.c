/*
 * Picks a free loopback TCP port below the ephemeral range, for agents that the benchmark
 * and the integration tests start.
 */
#include "freeport.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

/* The lowest port chosen, above the ports that well-known services usually take. */
#define FIRST_PORT 10000
/* net.ipv4.ip_local_port_range's lower end when /proc cannot be read. */
#define DEFAULT_EPHEMERAL_LOW 32768

/* Returns true when a listening socket could bind 127.0.0.1:port right now. */
static bool port_is_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    int enable = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &enable, sizeof(enable));
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool free_now = bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    close(fd);
    return free_now;
}

static int ephemeral_low(void)
{
    int low = DEFAULT_EPHEMERAL_LOW;
    int high;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (!f)
        return low;
    if (fscanf(f, "%d %d", &low, &high) != 2)
        low = DEFAULT_EPHEMERAL_LOW;
    fclose(f);
    return low;
}

int tl_free_loopback_port(void)
{
    int span = ephemeral_low() - FIRST_PORT;
    if (span <= 0)
        return 0;
    int start = (int)(getpid() % span);
    for (int i = 0; i < span; i++) {
        int port = FIRST_PORT + (start + i) % span;
        if (port_is_free(port))
            return port;
    }
    return 0;
}
