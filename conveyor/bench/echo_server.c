/*
 * A C epoll echo server: the ceiling row of conveyor's echo benchmarks.
 *
 * It does what the Python echo servers do (read what arrives, write it back) with nothing
 * in between, so under the same load generator its rate and its CPU per message are what
 * this machine's kernel and loopback allow: no event loop can beat it.
 *
 * Listens on 127.0.0.1 (port 0 unless --port says otherwise), prints the port on a line of
 * its own, and serves until its standard input reaches end of file (the harness closes it)
 * or it is killed. Level-triggered epoll, one read of up to 256 KiB per readiness event
 * into one buffer shared by all connections, written straight back; what the socket does
 * not take is copied aside and the connection stops reading until it has gone. (A read of
 * 64 KiB would take a 100 KiB message in two reads and two writes: conveyor, which reads
 * up to 256 KiB once a read fills 64 KiB, then spent less per message than this "ceiling".)
 * Built on first use by conveyor/bench/cbuild.py. Linux only.
 *
 * Usage: echo_server [--port P]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (256 * 1024)
#define MAX_EVENTS 256

struct conn {
    int fd;
    size_t start, end; /* unsent bytes are pending[start:end] */
    char *pending;     /* NULL while nothing waits to be sent */
};

/* Every read lands here: one buffer stays in the cache, where one per connection would not. */
static char shared[CHUNK];

static int epoll_fd;
static char listener_tag, stdin_tag; /* epoll data for the two fds that are not connections */

static void die(const char *what) {
    fprintf(stderr, "echo_server: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void drop(struct conn *c) {
    close(c->fd); /* closing removes it from the epoll set */
    free(c->pending);
    free(c);
}

static void set_events(struct conn *c, unsigned events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
}

/* Sends data[0:len]; returns how much went, or -1 if the connection failed and was dropped. */
static ssize_t send_some(struct conn *c, const char *data, size_t len) {
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = send(c->fd, data + sent, len - sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            drop(c);
            return -1;
        }
        sent += (size_t)n;
    }
    return (ssize_t)sent;
}

static void on_ready(struct conn *c, unsigned events) {
    if (c->pending) { /* waiting for room to send what is left */
        ssize_t n = send_some(c, c->pending + c->start, c->end - c->start);
        if (n < 0)
            return;
        c->start += (size_t)n;
        if (c->start == c->end) {
            free(c->pending);
            c->pending = NULL;
            set_events(c, EPOLLIN);
        }
        return;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    ssize_t got = recv(c->fd, shared, CHUNK, 0);
    if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        drop(c); /* end of stream or an error: the client went away */
        return;
    }
    ssize_t n = send_some(c, shared, (size_t)got);
    if (n < 0 || n == got)
        return;
    c->start = 0;
    c->end = (size_t)(got - n);
    c->pending = malloc(c->end);
    if (!c->pending)
        die("malloc");
    memcpy(c->pending, shared + n, c->end);
    set_events(c, EPOLLOUT);
}

static void accept_all(int listener) {
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                errno == ECONNABORTED)
                return;
            die("accept4");
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = malloc(sizeof *c);
        if (!c)
            die("malloc");
        c->fd = fd;
        c->start = c->end = 0;
        c->pending = NULL;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
            die("epoll_ctl");
    }
}

int main(int argc, char **argv) {
    int port = 0;
    if (argc == 3 && strcmp(argv[1], "--port") == 0) {
        port = atoi(argv[2]);
    } else if (argc != 1) {
        fprintf(stderr, "usage: echo_server [--port P]\n");
        return 2;
    }
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listener < 0)
        die("socket");
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(listener, 1024) < 0)
        die("listen");
    socklen_t len = sizeof addr;
    if (getsockname(listener, (struct sockaddr *)&addr, &len) < 0)
        die("getsockname");

    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0)
        die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listener_tag};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener, &ev) < 0)
        die("epoll_ctl");
    ev.data.ptr = &stdin_tag;
    /* Fails if stdin is a regular file such as /dev/null: then only a signal stops us. */
    (void)epoll_ctl(epoll_fd, EPOLL_CTL_ADD, 0, &ev);

    printf("%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epoll_fd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            void *tag = events[i].data.ptr;
            if (tag == &listener_tag) {
                accept_all(listener);
            } else if (tag == &stdin_tag) {
                char byte;
                if (read(0, &byte, 1) <= 0)
                    return 0; /* the harness is done with us */
            } else {
                on_ready(tag, events[i].events);
            }
        }
    }
}
