/* A minimal keep-alive HTTP/1.1 server: every request gets 200 and a 1,024-byte body.
 *
 * usage: http1k [PORT]   (default: $PORT, as `tulle run --port` sets it)
 *
 * Single-threaded, epoll, on 127.0.0.1. It reads requests without bodies (GET) and answers
 * each one, pipelined or not. It is the application behind every path the data-plane
 * benchmark compares, so its own cost is the same in all of them.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BODY 1024
#define BUFFER 16384

typedef struct {
    int fd;
    size_t used;
    char buf[BUFFER];
} conn_t;

static char response[BODY + 128];
static size_t response_len;

int main(int argc, char **argv) {
    const char *raw = argc > 1 ? argv[1] : getenv("PORT");
    if (raw == NULL) {
        fprintf(stderr, "usage: http1k PORT\n");
        return 2;
    }
    int header = snprintf(response, sizeof response,
                          "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                          "Content-Length: %d\r\n\r\n", BODY);
    memset(response + header, 'x', BODY);
    response_len = (size_t)header + BODY;
    int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(raw))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 512)) {
        perror("http1k: bind");
        return 1;
    }
    int epoll_fd = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener, &ev);
    struct epoll_event events[64];
    for (;;) {
        int n = epoll_wait(epoll_fd, events, 64, -1);
        for (int e = 0; e < n; e++) {
            conn_t *c = events[e].data.ptr;
            if (c == NULL) {
                int fd = accept(listener, NULL, NULL);
                if (fd < 0) continue;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                c = calloc(1, sizeof *c);
                c->fd = fd;
                struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &cev);
                continue;
            }
            ssize_t got = read(c->fd, c->buf + c->used, BUFFER - c->used);
            if (got <= 0) {
                close(c->fd); /* also leaves the epoll set */
                free(c);
                continue;
            }
            c->used += (size_t)got;
            char *end;
            while ((end = memmem(c->buf, c->used, "\r\n\r\n", 4)) != NULL) {
                size_t length = (size_t)(end - c->buf) + 4;
                if (write(c->fd, response, response_len) != (ssize_t)response_len) break;
                memmove(c->buf, c->buf + length, c->used - length);
                c->used -= length;
            }
            if (c->used == BUFFER) { /* a request too large for us: give up on it */
                close(c->fd);
                free(c);
            }
        }
    }
}
