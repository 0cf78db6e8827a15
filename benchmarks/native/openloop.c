/* Open-loop HTTP/1.1 load at a constant rate, corrected for coordinated omission.
 *
 * usage: openloop PORT RATE SECONDS CONNECTIONS PATH SPIN_US
 *
 * Request k is due at t0 + k/RATE and goes on keep-alive connection k % CONNECTIONS, so each
 * connection carries RATE/CONNECTIONS, staggered. A connection sends its next request as soon
 * as it is due and the previous response is in. Latency runs from the request's *intended*
 * send time to the last byte of its response (wrk2's correction): a stalled response makes
 * every request queued behind it late, and that lateness is counted.
 *
 * It sleeps on an absolute timerfd until SPIN_US before a request is due, then polls: waking
 * from idle costs ~100 us on a VM, and that would land in every latency.
 *
 * Output on stdout: "sent S ok O errors E unfinished U elapsed SECONDS", then one line per 200
 * response: its latency and how late the generator itself sent it (its own overhead), in ns.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define BUFFER (64 * 1024)
#define GRACE_NS (5LL * 1000000000LL) /* after the last due time: give up on the rest */

typedef struct {
    int fd;
    long long in_flight; /* request index, or -1 */
    long long next;      /* the next request index this connection carries */
    size_t used;
    char buf[BUFFER];
} conn_t;

static int port;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int dial(int epoll_fd, conn_t *c) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
    c->fd = fd;
    c->used = 0;
    return 0;
}

static void hang_up(int epoll_fd, conn_t *c) {
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->used = 0;
}

/* The length of a complete response at the start of c->buf; 0 if incomplete; -1 if it cannot
 * be parsed (no Content-Length: chunked bodies are not expected here). */
static long parse(conn_t *c, int *status) {
    char *end = memmem(c->buf, c->used, "\r\n\r\n", 4);
    if (end == NULL) return c->used >= BUFFER ? -1 : 0;
    size_t head = (size_t)(end - c->buf) + 4;
    if (head < 16 || strncmp(c->buf, "HTTP/1.", 7) != 0) return -1;
    *status = atoi(c->buf + 9);
    long length = -1;
    for (char *line = memmem(c->buf, head, "\r\n", 2); line != NULL && line < end;
         line = memmem(line + 2, head - (size_t)(line + 2 - c->buf), "\r\n", 2)) {
        if (strncasecmp(line + 2, "content-length:", 15) == 0) {
            length = atol(line + 17);
            break;
        }
    }
    if (length < 0 || head + (size_t)length > BUFFER) return -1;
    return c->used >= head + (size_t)length ? (long)(head + (size_t)length) : 0;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: openloop PORT RATE SECONDS CONNECTIONS PATH SPIN_US\n");
        return 2;
    }
    port = atoi(argv[1]);
    double rate = atof(argv[2]), seconds = atof(argv[3]);
    int connections = atoi(argv[4]);
    long long spin_ns = atoll(argv[6]) * 1000LL;
    char request[512];
    size_t request_len = (size_t)snprintf(request, sizeof request,
                                          "GET %s HTTP/1.1\r\nHost: bench-server\r\n"
                                          "User-Agent: tulle-openloop\r\n\r\n", argv[5]);
    long long total = (long long)(rate * seconds);
    double gap_ns = 1e9 / rate;
    if (total < 1 || connections < 1 || request_len >= sizeof request) return 2;
    long long *latency = calloc((size_t)total, sizeof *latency);
    long long *lag = calloc((size_t)total, sizeof *lag); /* by request: sent at minus due */
    long long *recorded_lag = calloc((size_t)total, sizeof *recorded_lag);
    conn_t *conns = calloc((size_t)connections, sizeof *conns);
    int epoll_fd = epoll_create1(0);
    int timer_fd = timerfd_create(CLOCK_MONOTONIC, 0);
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, timer_fd, &tev);
    for (int i = 0; i < connections; i++) {
        conns[i].in_flight = -1;
        conns[i].next = i;
        if (dial(epoll_fd, &conns[i]) != 0) {
            perror("openloop: connect");
            return 1;
        }
    }
    long long sent = 0, ok = 0, errors = 0, done = 0, recorded = 0, armed = -1;
    long long t0 = now_ns() + 1000000LL;
#define DUE(k) (t0 + (long long)((double)(k) * gap_ns))
    struct epoll_event events[64];
    while (done < total) {
        long long now = now_ns();
        if (now > DUE(total - 1) + GRACE_NS) break;
        /* Every idle connection whose next request is due sends it. */
        for (int i = 0; i < connections; i++) {
            conn_t *c = &conns[i];
            if (c->in_flight >= 0 || c->next >= total || DUE(c->next) > now) continue;
            if (c->fd < 0 && dial(epoll_fd, c) != 0) {
                errors++, done++, c->next += connections;
                continue;
            }
            if (write(c->fd, request, request_len) != (ssize_t)request_len) {
                errors++, done++, c->next += connections;
                hang_up(epoll_fd, c);
                continue;
            }
            lag[c->next] = now_ns() - DUE(c->next);
            c->in_flight = c->next;
            c->next += connections;
            sent++;
        }
        /* Wait for a response, or until the next request an idle connection will send. */
        long long next_due = -1;
        for (int i = 0; i < connections; i++) {
            conn_t *c = &conns[i];
            if (c->in_flight < 0 && c->next < total && (next_due < 0 || c->next < next_due))
                next_due = c->next;
        }
        int timeout_ms = 100;
        if (next_due >= 0) {
            long long wait = DUE(next_due) - now_ns();
            if (wait <= 0) continue;
            if (wait <= spin_ns) {
                timeout_ms = 0;
            } else if (next_due != armed) {
                long long at = DUE(next_due) - spin_ns;
                struct itimerspec when = {.it_value = {.tv_sec = at / 1000000000LL,
                                                       .tv_nsec = at % 1000000000LL}};
                timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &when, NULL);
                armed = next_due;
            }
        }
        int n = epoll_wait(epoll_fd, events, 64, timeout_ms);
        for (int e = 0; e < n; e++) {
            conn_t *c = events[e].data.ptr;
            if (c == NULL) {
                uint64_t expirations;
                if (read(timer_fd, &expirations, sizeof expirations) < 0) expirations = 0;
                armed = -1;
                continue;
            }
            if (c->fd < 0) continue;
            ssize_t got = read(c->fd, c->buf + c->used, BUFFER - c->used);
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN) continue;
                if (c->in_flight >= 0) errors++, done++, c->in_flight = -1;
                hang_up(epoll_fd, c);
                continue;
            }
            c->used += (size_t)got;
            int status = 0;
            long length;
            while (c->in_flight >= 0 && (length = parse(c, &status)) != 0) {
                long long k = c->in_flight;
                c->in_flight = -1;
                done++;
                if (length < 0) {
                    errors++;
                    hang_up(epoll_fd, c);
                    break;
                }
                if (status == 200) {
                    ok++;
                    latency[recorded] = now_ns() - DUE(k);
                    recorded_lag[recorded++] = lag[k];
                } else {
                    errors++;
                }
                memmove(c->buf, c->buf + length, c->used - (size_t)length);
                c->used -= (size_t)length;
            }
        }
    }
    printf("sent %lld ok %lld errors %lld unfinished %lld elapsed %.3f\n", sent, ok, errors,
           total - done, (double)(now_ns() - t0) / 1e9);
    for (long long i = 0; i < recorded; i++) printf("%lld %lld\n", latency[i], recorded_lag[i]);
    return 0;
}
