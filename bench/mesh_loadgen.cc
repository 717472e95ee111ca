// mesh_loadgen: a fixed-rate (open-loop) HTTP/1.1 load generator for bench/mesh_mtls_bench.py.
//
//   mesh_loadgen HOST PORT RATE SECONDS [--connections N] [--warmup S] [--path /] [--host NAME]
//
// Request i is due at start + i/RATE whether or not earlier ones have answered; its latency runs from that
// intended time to the last byte of its response, so a stall shows up in every request it delayed (no
// coordinated omission). Requests go out on idle keep-alive connections (opened up front); when none is idle
// the request waits in a queue and that wait is part of its latency. One thread, epoll + timerfd.
// Prints one JSON line: {"rate":..,"sent":..,"completed":..,"errors":..,"late_ms_max":..,"p50_us":..,
// "p90_us":..,"p99_us":..,"p999_us":..,"max_us":..,"mean_us":..}.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

namespace {

using Nanos = int64_t;

Nanos now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return Nanos(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct Conn {
  int fd = -1;
  bool busy = false;
  Nanos intended = 0;
  bool measured = false;
  std::string in;
};

struct Options {
  std::string host, port, path = "/", host_header;
  double rate = 1000;
  double seconds = 10, warmup = 2;
  int connections = 32;
};

int connectTo(const addrinfo* ai) {
  int fd = socket(ai->ai_family, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

// Length of a complete response at the start of `buf`, or 0 when more bytes are needed; -1 on garbage.
// Handles Content-Length bodies (what nginx and the proxies send for these fixed bodies).
long completeResponse(const std::string& buf) {
  size_t head = buf.find("\r\n\r\n");
  if (head == std::string::npos) return 0;
  if (buf.compare(0, 5, "HTTP/") != 0) return -1;
  long length = 0;
  size_t pos = 0;
  while ((pos = buf.find('\n', pos)) != std::string::npos && pos < head) {
    ++pos;
    if (strncasecmp(buf.c_str() + pos, "content-length:", 15) == 0) length = atol(buf.c_str() + pos + 15);
  }
  size_t total = head + 4 + size_t(length);
  return buf.size() >= total ? long(total) : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        fprintf(stderr, "%s needs a value\n", a.c_str());
        exit(2);
      }
      return argv[++i];
    };
    if (a == "--connections")
      o.connections = atoi(next().c_str());
    else if (a == "--warmup")
      o.warmup = atof(next().c_str());
    else if (a == "--path")
      o.path = next();
    else if (a == "--host")
      o.host_header = next();
    else
      pos.push_back(a);
  }
  if (pos.size() != 4) {
    fprintf(stderr,
            "usage: mesh_loadgen HOST PORT RATE SECONDS [--connections N] [--warmup S] [--path P] "
            "[--host NAME]\n");
    return 2;
  }
  o.host = pos[0];
  o.port = pos[1];
  o.rate = atof(pos[2].c_str());
  o.seconds = atof(pos[3].c_str());
  if (o.rate <= 0 || o.seconds <= 0 || o.connections <= 0) {
    fprintf(stderr, "rate, seconds and connections must be positive\n");
    return 2;
  }
  if (o.host_header.empty()) o.host_header = o.host;
  const std::string request =
      "GET " + o.path + " HTTP/1.1\r\nHost: " + o.host_header + "\r\nUser-Agent: mesh_loadgen\r\n\r\n";

  addrinfo hints{}, *ai = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(o.host.c_str(), o.port.c_str(), &hints, &ai) != 0 || ai == nullptr) {
    fprintf(stderr, "cannot resolve %s\n", o.host.c_str());
    return 1;
  }
  int ep = epoll_create1(0);
  std::vector<Conn> conns(o.connections);
  for (size_t i = 0; i < conns.size(); ++i) {
    conns[i].fd = connectTo(ai);
    if (conns[i].fd < 0) {
      fprintf(stderr, "connect %s:%s: %s\n", o.host.c_str(), o.port.c_str(), strerror(errno));
      return 1;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
  }
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  epoll_event tev{};
  tev.events = EPOLLIN;
  tev.data.u64 = UINT64_MAX;
  epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

  const Nanos period = Nanos(1e9 / o.rate);
  const Nanos start = now() + 1000000;
  const Nanos measure_from = start + Nanos(o.warmup * 1e9);
  const Nanos end = measure_from + Nanos(o.seconds * 1e9);
  uint64_t next_index = 0, sent = 0, completed = 0, errors = 0;
  std::deque<Nanos> queue;  // intended send times waiting for an idle connection
  std::vector<int64_t> latencies;
  latencies.reserve(size_t(o.rate * o.seconds * 1.1) + 16);
  Nanos max_late = 0;
  std::vector<size_t> idle;
  for (size_t i = 0; i < conns.size(); ++i) idle.push_back(i);

  auto arm = [&](Nanos at) {
    itimerspec its{};
    its.it_value.tv_sec = at / 1000000000;
    its.it_value.tv_nsec = at % 1000000000;
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, nullptr);
  };
  auto reopen = [&](size_t i) {
    idle.erase(std::remove(idle.begin(), idle.end(), i), idle.end());
    epoll_ctl(ep, EPOLL_CTL_DEL, conns[i].fd, nullptr);
    close(conns[i].fd);
    conns[i] = Conn{};
    conns[i].fd = connectTo(ai);
    if (conns[i].fd < 0) {
      fprintf(stderr, "reconnect failed: %s\n", strerror(errno));
      exit(1);
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    idle.push_back(i);
  };
  auto dispatch = [&]() {
    while (!queue.empty() && !idle.empty()) {
      size_t i = idle.back();
      idle.pop_back();
      Conn& c = conns[i];
      c.intended = queue.front();
      queue.pop_front();
      c.measured = c.intended >= measure_from;
      c.busy = true;
      max_late = std::max(max_late, now() - c.intended);
      ssize_t n = write(c.fd, request.data(), request.size());  // small: one write on an idle socket
      if (n != ssize_t(request.size())) {
        ++errors;
        reopen(i);
        continue;
      }
      ++sent;
    }
  };

  arm(start);
  bool done = false;
  epoll_event events[64];
  char buf[65536];
  while (!done) {
    int n = epoll_wait(ep, events, 64, 1000);
    for (int k = 0; k < n; ++k) {
      if (events[k].data.u64 == UINT64_MAX) {
        uint64_t ticks;
        (void)!read(tfd, &ticks, sizeof(ticks));
        const Nanos t = now();
        while (start + Nanos(next_index) * period <= t && start + Nanos(next_index) * period < end) {
          queue.push_back(start + Nanos(next_index) * period);
          ++next_index;
        }
        const Nanos due = start + Nanos(next_index) * period;
        if (due < end) arm(due);
        dispatch();
        continue;
      }
      size_t i = events[k].data.u64;
      Conn& c = conns[i];
      ssize_t r = read(c.fd, buf, sizeof(buf));
      if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (c.busy) ++errors;
        reopen(i);
        dispatch();
        continue;
      }
      c.in.append(buf, size_t(r));
      long len = completeResponse(c.in);
      if (len < 0) {
        ++errors;
        reopen(i);
        continue;
      }
      if (len == 0) continue;
      const Nanos t = now();
      const bool ok = c.in.compare(9, 3, "200") == 0;
      c.in.erase(0, size_t(len));
      if (c.busy) {
        ++completed;
        if (!ok) ++errors;
        if (c.measured && ok) latencies.push_back((t - c.intended) / 1000);
      }
      c.busy = false;
      idle.push_back(i);
      dispatch();
    }
    const Nanos t = now();
    const bool all_issued = start + Nanos(next_index) * period >= end;
    const bool none_busy = std::none_of(conns.begin(), conns.end(), [](const Conn& c) { return c.busy; });
    if ((all_issued && queue.empty() && none_busy) || t > end + 10000000000LL) done = true;
  }
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double p) -> int64_t {
    if (latencies.empty()) return -1;
    size_t idx = size_t(p / 100.0 * double(latencies.size() - 1) + 0.5);
    return latencies[std::min(idx, latencies.size() - 1)];
  };
  double mean = 0;
  for (auto v : latencies) mean += double(v);
  if (!latencies.empty()) mean /= double(latencies.size());
  printf(
      "{\"rate\": %.1f, \"measured\": %zu, \"sent\": %lu, \"completed\": %lu, \"errors\": %lu, "
      "\"late_ms_max\": %.3f, \"p50_us\": %ld, \"p90_us\": %ld, \"p99_us\": %ld, \"p999_us\": %ld, "
      "\"max_us\": %ld, \"mean_us\": %.1f}\n",
      o.rate, latencies.size(), (unsigned long)sent, (unsigned long)completed, (unsigned long)errors,
      double(max_late) / 1e6, (long)pct(50), (long)pct(90), (long)pct(99), (long)pct(99.9),
      (long)(latencies.empty() ? -1 : latencies.back()), mean);
  freeaddrinfo(ai);
  return errors == 0 ? 0 : 3;
}
