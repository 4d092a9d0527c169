// SPDX-License-Identifier: Apache-2.0
//
// kernmesh-loadgen: the bench's constant-rate HTTP/1.1 load generator.
//
//   kernmesh-loadgen --host ADDR --port P --rate R --seconds S --connections K [--path /] [--warmup W]
//
// Request i is due at t0 + i/R whatever happened before, and its latency is
// measured from that intended time, not from when it could be sent, so a
// stall shows in every request that should have gone out during it, as it
// would for real users (wrk2's correction for "coordinated omission"). K
// keep-alive connections, at most one request in flight on each; a request
// due while every connection is busy waits for the first one free, and that
// wait counts.
//
// --warmup W sends at the same rate for W seconds first, on the same
// connections and on the same schedule, and records none of it, so the
// measured window starts in the steady state. A window that opens on K new
// connections measures their setup as well: at 10 000 req/s on loopback,
// 20-70 % of a 5 s run's requests over 1 ms fell in its first 200 ms, behind
// our proxy and behind HAProxy alike. What a new connection costs is the
// bench's connection-setup workload's to measure.
//
// Why C and not TypeScript: the generator's own scheduling is part of every
// latency it reports. The previous generator, in Node, spent ~120 µs of CPU
// per request (a clock thread, its messages, JIT and GC threads on the same
// two cores as the proxy under test) and put a floor of 0.35-0.5 ms under
// every mode's p99, no mesh included; this one sleeps on a timerfd, does one
// read and one write per request, and its p99 with nothing in between is
// about 0.17 ms on the same machine.
//
// Output, one JSON line on stdout: {"requests", "warmup_requests", "errors", "latency_us": [...],
// "late_us": [...]} where latency_us holds each answered measured request's
// latency and late_us how late each measured request was sent after its due
// time (the generator's own floor); errors counts every request that failed
// or went unanswered, warm-up included. Percentiles are computed by the caller
// (src/bench/workloads/latency.ts), with the rest of the bench's statistics.
// On failure: {"problem": "..."} and exit status 1; bad arguments: exit 2.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define RESPONSE_MAX 65536
#define TIMER_TAG UINT32_MAX

struct conn {
  int fd;             // -1 once closed
  long request;       // index of the request in flight, -1 when idle
  size_t len;         // bytes of the response read so far
  char buf[RESPONSE_MAX + 1];
};

struct options {
  const char *host, *port, *path;
  double rate, seconds, warmup;
  long connections;
};

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("kernmesh-loadgen: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs("\nusage: kernmesh-loadgen --host ADDR --port P --rate R --seconds S --connections K [--path /] [--warmup W]\n", stderr);
  va_end(ap);
  exit(2);
}

static void problem(const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  for (char *p = msg; *p; p++)
    if (*p == '"' || *p == '\\') *p = '\'';
  printf("{\"problem\":\"%s\"}\n", msg);
  exit(1);
}

static double positive(const char *name, const char *value) {
  char *end;
  double x = strtod(value, &end);
  if (*end || !(x > 0)) usage("%s must be a positive number, got '%s'", name, value);
  return x;
}

static double non_negative(const char *name, const char *value) {
  char *end;
  double x = strtod(value, &end);
  if (*end || !(x >= 0)) usage("%s must be a number of seconds, 0 or more, got '%s'", name, value);
  return x;
}

static struct options parse_args(int argc, char **argv) {
  struct options o = {.host = NULL, .port = "80", .path = "/", .rate = 1000, .seconds = 5, .warmup = 0, .connections = 16};
  for (int i = 1; i < argc; i += 2) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage("%s needs a value", k);
    if (!strcmp(k, "--host")) o.host = v;
    else if (!strcmp(k, "--port")) o.port = v;
    else if (!strcmp(k, "--path")) o.path = v;
    else if (!strcmp(k, "--rate")) o.rate = positive(k, v);
    else if (!strcmp(k, "--seconds")) o.seconds = positive(k, v);
    else if (!strcmp(k, "--connections")) o.connections = (long)positive(k, v);
    else if (!strcmp(k, "--warmup")) o.warmup = non_negative(k, v);
    else usage("unknown option %s", k);
  }
  if (!o.host) usage("--host is required");
  if (o.connections < 1 || o.connections > 10000) usage("--connections must be 1-10000");
  if (o.rate * (o.seconds + o.warmup) > 50e6) usage("--rate x (--seconds + --warmup) is more than 50 million requests");
  return o;
}

static int dial(const struct options *o) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
  struct addrinfo *ai;
  int rc = getaddrinfo(o->host, o->port, &hints, &ai);
  if (rc) usage("--host %s --port %s: %s (give a numeric address and port)", o->host, o->port, gai_strerror(rc));
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) problem("connect to %s port %s: %s", o->host, o->port, strerror(errno));
  freeaddrinfo(ai);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, O_NONBLOCK);
  return fd;
}

// Length of the complete response at the start of c->buf, 0 while incomplete,
// -1 for a response this generator cannot frame (every server in the bench
// sends Content-Length).
static long response_length(struct conn *c) {
  c->buf[c->len] = 0;
  const char *end = strstr(c->buf, "\r\n\r\n");
  if (!end) return c->len >= RESPONSE_MAX ? -1 : 0;
  const char *cl = strcasestr(c->buf, "\r\ncontent-length:");
  if (!cl || cl > end) return -1;
  long body = strtol(cl + strlen("\r\ncontent-length:"), NULL, 10);
  long total = (end + 4 - c->buf) + body;
  if (body < 0 || total > RESPONSE_MAX) return -1;
  return (size_t)total <= c->len ? total : 0;
}

static void print_samples(const char *name, const float *xs, long n) {
  printf(",\"%s\":[", name);
  for (long i = 0; i < n; i++) printf(i ? ",%.1f" : "%.1f", xs[i]);
  putchar(']');
}

int main(int argc, char **argv) {
  struct options o = parse_args(argc, argv);
  const long scheduled = (long)(o.rate * o.seconds + 0.5);
  // Requests [0, warm) are the warm-up: sent and answered like the rest, never recorded.
  const long warm = (long)(o.rate * o.warmup + 0.5);
  const long measured = scheduled > 0 ? scheduled : 1;
  const long total = warm + measured;
  const double interval_ns = 1e9 / o.rate;
  char request[2048];
  int request_len = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: kernmesh-bench\r\n\r\n", o.path, o.host);
  if (request_len >= (int)sizeof request) usage("--path is too long");

  // 1 ns of timer slack instead of the default 50 µs: the wake for each due
  // request is the generator's own contribution to every latency.
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  int timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (ep < 0 || timer < 0) problem("epoll/timerfd: %s", strerror(errno));
  struct epoll_event tev = {.events = EPOLLIN, .data.u32 = TIMER_TAG};
  epoll_ctl(ep, EPOLL_CTL_ADD, timer, &tev);

  struct conn *conns = calloc(o.connections, sizeof *conns);
  uint32_t *idle = calloc(o.connections, sizeof *idle);
  float *latency_us = calloc(measured, sizeof *latency_us), *late_us = calloc(measured, sizeof *late_us);
  if (!conns || !idle || !latency_us || !late_us) problem("out of memory for %ld requests", total);
  long nidle = 0, open = 0;
  for (long i = 0; i < o.connections; i++) {
    conns[i].fd = dial(&o);
    conns[i].request = -1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    idle[nidle++] = (uint32_t)i;
    open++;
  }

  long sent = 0, answered = 0, failed = 0, recorded = 0;
  const int64_t t0 = now_ns() + 5000000;
  const int64_t give_up = t0 + (int64_t)((o.warmup + o.seconds) * 1e9) + 10000000000LL;
  int64_t armed = -1;
#define DUE(i) (t0 + (int64_t)((double)(i) * interval_ns))

  while (answered + failed < total) {
    int64_t now = now_ns();
    if (now > give_up) problem("timed out waiting for responses (%ld of %ld answered)", answered, total);
    if (open == 0) problem("every connection was closed (%ld of %ld answered)", answered, total);
    if (failed > total / 100) problem("too many errors: %ld of %ld requests", failed, sent);

    // Send every request that is due, while a connection is free.
    while (sent < total && nidle && DUE(sent) <= now) {
      struct conn *c = &conns[idle[--nidle]];
      if (sent >= warm) late_us[sent - warm] = (float)((now - DUE(sent)) / 1e3);
      c->request = sent++;
      // MSG_NOSIGNAL: a peer that closed makes this fail (and count), not raise SIGPIPE and kill the run.
      if (send(c->fd, request, request_len, MSG_NOSIGNAL) != request_len) failed++, c->request = -1, close(c->fd), c->fd = -1, open--;
    }
    // Sleep until the next one is due; with no connection free, a response wakes us first.
    if (sent < total && nidle && DUE(sent) != armed) {
      armed = DUE(sent);
      struct itimerspec at = {.it_value = {.tv_sec = armed / 1000000000, .tv_nsec = armed % 1000000000}};
      timerfd_settime(timer, TFD_TIMER_ABSTIME, &at, NULL);
    }

    struct epoll_event evs[64];
    int n = epoll_wait(ep, evs, 64, 1000);
    if (n < 0 && errno != EINTR) problem("epoll_wait: %s", strerror(errno));
    for (int k = 0; k < n; k++) {
      if (evs[k].data.u32 == TIMER_TAG) {
        uint64_t expirations;
        if (read(timer, &expirations, sizeof expirations) < 0) { /* a spurious wake: the loop looks at the clock anyway */ }
        continue;
      }
      struct conn *c = &conns[evs[k].data.u32];
      if (c->fd < 0) continue;
      ssize_t r = read(c->fd, c->buf + c->len, RESPONSE_MAX - c->len);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      long len = r > 0 ? (c->len += (size_t)r, response_length(c)) : -1;
      if (len == 0) continue;
      int64_t done = now_ns();
      if (len < 0) {
        // Closed, reset, or an answer it cannot frame: the connection is done; a request on it failed.
        if (c->request >= 0) failed++;
        else for (long i = 0; i < nidle; i++) if (idle[i] == evs[k].data.u32) idle[i] = idle[--nidle];
        close(c->fd), c->fd = -1, open--;
        continue;
      }
      if (c->request < 0) problem("a response nobody asked for");
      if (strncmp(c->buf, "HTTP/1.1 2", 10) != 0) failed++;
      else {
        answered++;
        if (c->request >= warm) latency_us[recorded++] = (float)((done - DUE(c->request)) / 1e3);
      }
      c->len -= (size_t)len;
      memmove(c->buf, c->buf + len, c->len);
      c->request = -1;
      idle[nidle++] = evs[k].data.u32;
    }
  }

  // errors counts the warm-up's too: a request that failed there is as much a failure.
  printf("{\"requests\":%ld,\"warmup_requests\":%ld,\"errors\":%ld", recorded, answered - recorded, total - answered);
  print_samples("latency_us", latency_us, recorded);
  print_samples("late_us", late_us, sent > warm ? sent - warm : 0);
  puts("}");
  return 0;
}
