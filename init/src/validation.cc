// Redirect validation: a listener on the capture ports and a probe client that the rules must redirect.
#include "validation.h"

#include <arpa/inet.h>
#include <grp.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

namespace skiff::init {
namespace {

constexpr const char* kProbeIp = "127.0.0.6";  // not 127.0.0.1, so the proxy-uid lo rule captures it
constexpr int kClientSetIdFailed = 3;

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

sockaddr_in loopback(const char* ip, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  ::inet_pton(AF_INET, ip, &sa.sin_addr);
  return sa;
}

// A listener on 127.0.0.1:port (where nat REDIRECT delivers over lo), or -1 with *error set.
Fd listenOn(uint16_t port, std::string* error) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in sa = loopback("127.0.0.1", port);
  if (fd.get() < 0 || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 ||
      ::listen(fd.get(), 16) != 0) {
    *error += "cannot listen on 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(errno) + "; ";
    return Fd();
  }
  return fd;
}

// The probe client: runs in a child process with the proxy's identity and dials until killed.
[[noreturn]] void probeClient(const Options& o) {
  uint32_t uid = o.proxyUids.empty() ? ::getuid() : o.proxyUids.front();
  uint32_t gid = o.proxyGids.empty() ? ::getgid() : o.proxyGids.front();
  if (::getuid() != uid &&
      (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 || ::setresuid(uid, uid, uid) != 0)) {
    ::_exit(kClientSetIdFailed);
  }
  sockaddr_in local = loopback("127.0.0.1", 0);
  sockaddr_in target = loopback(kProbeIp, o.probePort);
  for (;;) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) == 0) {
      ::connect(fd, reinterpret_cast<sockaddr*>(&target), sizeof(target));
    }
    if (fd >= 0) ::close(fd);
    ::usleep(100 * 1000);  // retry pacing while the parent waits for a redirected connection
  }
}

// The original destination port of an accepted, redirected connection (0 when there is none).
uint16_t originalPort(int fd) {
  sockaddr_in dst{};
  socklen_t len = sizeof(dst);
  if (::getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len) != 0) return 0;
  return ntohs(dst.sin_port);
}

}  // namespace

std::string validateRedirect(const Options& o) {
  std::string listenErrors;
  std::vector<Fd> listeners;
  for (uint16_t port : {o.outboundPort, o.inboundPort}) {
    Fd fd = listenOn(port, &listenErrors);
    if (fd.get() >= 0) listeners.push_back(std::move(fd));
  }
  if (listeners.empty()) return "no validation listener: " + listenErrors;

  pid_t child = ::fork();
  if (child < 0) return std::string("fork: ") + std::strerror(errno);
  if (child == 0) probeClient(o);

  std::string result;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o.probeTimeoutMs);
  bool done = false;
  while (!done) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result = "no connection to " + std::string(kProbeIp) + ":" + std::to_string(o.probePort) +
               " was redirected to port " + std::to_string(o.outboundPort) + " or " +
               std::to_string(o.inboundPort) + " within " + std::to_string(o.probeTimeoutMs) +
               " ms; the capture rules are not in effect";
      break;
    }
    int status = 0;
    if (::waitpid(child, &status, WNOHANG) == child) {
      child = -1;
      result = "the probe client could not switch to the proxy uid/gid (run as root)";
      break;
    }
    std::vector<pollfd> fds;
    for (const auto& l : listeners) fds.push_back({l.get(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), static_cast<int>(std::min<int64_t>(left.count(), 100))) <= 0) continue;
    for (const auto& p : fds) {
      if (!(p.revents & POLLIN)) continue;
      Fd conn(::accept4(p.fd, nullptr, nullptr, SOCK_CLOEXEC));
      if (conn.get() >= 0 && originalPort(conn.get()) == o.probePort) done = true;
    }
  }
  if (child > 0) {
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
  }
  return result;
}

}  // namespace skiff::init
