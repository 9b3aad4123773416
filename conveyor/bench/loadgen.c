/*
 * conveyor's load generator: ping-pong over N TCP connections (optionally TLS), with epoll.
 *
 * Each connection sends one message of --size bytes and waits until all of those bytes have
 * come back before it sends the next (a message is "echoed" when its last byte returns).
 * After --warmup seconds the program prints "start" on a line of its own, counts echoed
 * messages for --duration seconds, then prints one JSON object and exits:
 *
 *     {"messages": M, "bytes": B, "seconds": S, "client_cpu": C, ...}
 *
 * client_cpu is this process's user + system CPU over the measured window, so the caller
 * can tell whether the client, not the server, was the limit. The "start" line lets the
 * caller sample the server's CPU over exactly the same window.
 *
 * Written in C so that the client costs a few hundred nanoseconds per message and the
 * server under test is what sets the pace. Built on first use by conveyor/bench/cbuild.py;
 * TLS is compiled in with -DLOADGEN_TLS and linked with -lssl -lcrypto when OpenSSL's
 * headers are present. Linux only (epoll).
 *
 * Usage: loadgen --port P [--host 127.0.0.1] [--size 1024] [--connections 50]
 *                [--duration 3] [--warmup 0.5] [--tls]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifdef LOADGEN_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

#define READ_BUFFER (256 * 1024)
#define MAX_EVENTS 256

struct conn {
    int fd;
    size_t sent;      /* bytes of the current message written so far */
    size_t received;  /* bytes of the current message echoed back so far */
    int watching_out; /* EPOLLOUT is registered */
#ifdef LOADGEN_TLS
    SSL *ssl;
#endif
};

static char *message;
static size_t message_size = 1024;
static char read_buffer[READ_BUFFER];
static int epoll_fd;
static int measuring;
static unsigned long long echoed;  /* messages echoed since the window opened */

static void die(const char *what, const char *detail) {
    fprintf(stderr, "loadgen: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void watch(struct conn *c, int want_out) {
    if (c->watching_out == want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl", strerror(errno));
    c->watching_out = want_out;
}

/* Counts one echoed message and starts the next one. */
static void message_echoed(struct conn *c) {
    if (measuring)
        echoed++;
    c->sent = 0;
    c->received = 0;
}

static void account(struct conn *c, size_t n) {
    c->received += n;
    if (c->received > c->sent)
        die("the server sent back more bytes than were sent to it", NULL);
}

#ifdef LOADGEN_TLS
static SSL_CTX *tls_context;

static void tls_die(const char *what) {
    char detail[256];
    unsigned long code = ERR_get_error();
    ERR_error_string_n(code, detail, sizeof detail);
    die(what, code ? detail : strerror(errno));
}

/* Writes what is left of the message and reads what has come back, until TLS needs the
 * socket to become readable or writable again. */
static void tls_progress(struct conn *c) {
    int want_out = 0;
    for (;;) {
        int progressed = 0;
        if (c->sent < message_size) {
            int n = SSL_write(c->ssl, message + c->sent, (int)(message_size - c->sent));
            if (n > 0) {
                c->sent += (size_t)n;
                progressed = 1;
            } else {
                int err = SSL_get_error(c->ssl, n);
                if (err == SSL_ERROR_WANT_WRITE)
                    want_out = 1;
                else if (err != SSL_ERROR_WANT_READ)
                    tls_die("SSL_write");
            }
        }
        int n = SSL_read(c->ssl, read_buffer, sizeof read_buffer);
        if (n > 0) {
            account(c, (size_t)n);
            if (c->received == message_size)
                message_echoed(c);
            progressed = 1;
        } else {
            int err = SSL_get_error(c->ssl, n);
            if (err == SSL_ERROR_ZERO_RETURN)
                die("the server closed a connection", NULL);
            if (err == SSL_ERROR_WANT_WRITE)
                want_out = 1;
            else if (err != SSL_ERROR_WANT_READ)
                tls_die("SSL_read");
        }
        if (!progressed)
            break;
        want_out = 0;
    }
    watch(c, want_out);
}
#endif

static void send_rest(struct conn *c) {
    while (c->sent < message_size) {
        ssize_t n = send(c->fd, message + c->sent, message_size - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            die("send", strerror(errno));
        }
        c->sent += (size_t)n;
    }
    watch(c, c->sent < message_size);
}

static void tcp_progress(struct conn *c, unsigned events) {
    if (events & EPOLLIN) {
        /* One read per readiness event: level-triggered epoll reports the rest. */
        ssize_t n = recv(c->fd, read_buffer, sizeof read_buffer, 0);
        if (n == 0)
            die("the server closed a connection", NULL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            die("recv", strerror(errno));
        if (n > 0) {
            account(c, (size_t)n);
            if (c->received == message_size) {
                message_echoed(c);
                send_rest(c);
                return;
            }
        }
    }
    if (events & EPOLLOUT)
        send_rest(c);
}

static int connect_to(const char *host, int port) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        die("not an IPv4 address", host);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        die("socket", strerror(errno));
    /* Bounds the blocking connect and TLS handshake: a server that never answers fails the
     * run instead of hanging it. (Ignored once the socket is non-blocking.) */
    struct timeval limit = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("connect", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static double number(const char *flag, const char *text) {
    char *end;
    double value = strtod(text, &end);
    if (*text == '\0' || *end != '\0' || value < 0)
        die("not a non-negative number", flag);
    return value;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0, connections = 50, use_tls = 0;
    double duration = 3.0, warmup = 0.5;
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (strcmp(flag, "--tls") == 0) {
            use_tls = 1;
            continue;
        }
        if (i + 1 >= argc)
            die("missing value for", flag);
        const char *value = argv[++i];
        if (strcmp(flag, "--port") == 0)
            port = (int)number(flag, value);
        else if (strcmp(flag, "--host") == 0)
            host = value;
        else if (strcmp(flag, "--size") == 0)
            message_size = (size_t)number(flag, value);
        else if (strcmp(flag, "--connections") == 0)
            connections = (int)number(flag, value);
        else if (strcmp(flag, "--duration") == 0)
            duration = number(flag, value);
        else if (strcmp(flag, "--warmup") == 0)
            warmup = number(flag, value);
        else
            die("unknown option", flag);
    }
    if (port <= 0 || port > 65535 || message_size == 0 || connections <= 0)
        die("usage: loadgen --port P [--host H] [--size N] [--connections N] "
            "[--duration S] [--warmup S] [--tls]", NULL);
#ifndef LOADGEN_TLS
    if (use_tls)
        die("built without TLS (OpenSSL headers were missing at build time)", NULL);
#else
    if (use_tls) {
        tls_context = SSL_CTX_new(TLS_client_method());
        if (!tls_context)
            tls_die("SSL_CTX_new");
        SSL_CTX_set_verify(tls_context, SSL_VERIFY_NONE, NULL); /* the record layer, not PKI */
        SSL_CTX_set_mode(tls_context, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
#endif

    message = malloc(message_size);
    if (!message)
        die("out of memory", NULL);
    memset(message, 'x', message_size);
    epoll_fd = epoll_create1(0);
    if (epoll_fd < 0)
        die("epoll_create1", strerror(errno));

    struct conn *conns = calloc((size_t)connections, sizeof *conns);
    if (!conns)
        die("out of memory", NULL);
    for (int i = 0; i < connections; i++) {
        struct conn *c = &conns[i];
        c->fd = connect_to(host, port);
#ifdef LOADGEN_TLS
        if (use_tls) {
            /* Handshakes are done blocking, one after another, before anything is timed. */
            c->ssl = SSL_new(tls_context);
            if (!c->ssl || !SSL_set_fd(c->ssl, c->fd))
                tls_die("SSL_new");
            if (SSL_connect(c->ssl) != 1)
                tls_die("TLS handshake");
        }
#endif
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            die("epoll_ctl", strerror(errno));
    }
    for (int i = 0; i < connections; i++) {
#ifdef LOADGEN_TLS
        if (use_tls) {
            tls_progress(&conns[i]);
            continue;
        }
#endif
        send_rest(&conns[i]);
    }

    struct epoll_event events[MAX_EVENTS];
    double window_opens = now() + warmup, window_closes = 0, cpu_at_open = 0;
    for (;;) {
        double t = now();
        if (!measuring && t >= window_opens) {
            measuring = 1;
            echoed = 0;
            window_opens = t;
            window_closes = t + duration;
            cpu_at_open = cpu_seconds();
            printf("start\n");
            fflush(stdout);
        }
        if (measuring && t >= window_closes)
            break;
        double left = (measuring ? window_closes : window_opens) - t;
        int timeout = (int)(left * 1000) + 1;
        int n = epoll_wait(epoll_fd, events, MAX_EVENTS, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            unsigned ev = events[i].events;
            if ((ev & (EPOLLERR | EPOLLHUP)) && !(ev & EPOLLIN))
                die("a connection failed", NULL);
#ifdef LOADGEN_TLS
            if (use_tls) {
                tls_progress(c);
                continue;
            }
#endif
            tcp_progress(c, ev);
        }
    }
    double seconds = now() - window_opens;
    double client_cpu = cpu_seconds() - cpu_at_open;
    unsigned long long messages = echoed;
    printf("{\"messages\": %llu, \"bytes\": %llu, \"seconds\": %.6f, \"client_cpu\": %.6f, "
           "\"connections\": %d, \"size\": %zu, \"tls\": %s, \"client\": \"c\"}\n",
           messages, messages * (unsigned long long)message_size, seconds, client_cpu,
           connections, message_size, use_tls ? "true" : "false");
    fflush(stdout);
    /* Leave without a TLS close_notify or a drain: the window is over, and the server
     * under test sees an ordinary end of connection. */
    for (int i = 0; i < connections; i++)
        close(conns[i].fd);
    return 0;
}
