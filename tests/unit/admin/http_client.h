// A blocking HTTP/1.1 test client over plain POSIX sockets, with receive timeouts instead of sleeps.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <optional>
#include <string>

namespace skiff::server::testing {

struct HttpResponse {
  int status = 0;
  std::string head;  // Status line and headers, lower-cased names as sent.
  std::string body;
  std::string header(const std::string& name) const;  // First value of a lower-case header name.
};

class HttpConnection {
 public:
  explicit HttpConnection(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~HttpConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  bool connected() const { return connected_; }

  bool send(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads one Content-Length framed response; nullopt on timeout or close before it is complete.
  std::optional<HttpResponse> readResponse() {
    size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return std::nullopt;
    }
    HttpResponse response;
    response.head = buffer_.substr(0, head_end + 2);
    if (response.head.size() < 12) return std::nullopt;
    response.status = std::stoi(response.head.substr(9, 3));
    size_t length = 0;
    std::string cl = response.header("content-length");
    if (!cl.empty()) length = std::stoul(cl);
    while (buffer_.size() < head_end + 4 + length) {
      if (!fill()) return std::nullopt;
    }
    response.body = buffer_.substr(head_end + 4, length);
    buffer_.erase(0, head_end + 4 + length);
    return response;
  }

  // True when the peer closed the connection (EOF or reset) before the timeout, with no more data.
  bool closedByPeer() {
    char c;
    ssize_t n = ::recv(fd_, &c, 1, 0);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }

 private:
  bool fill() {
    char buf[16384];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    buffer_.append(buf, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string buffer_;
};

inline std::string HttpResponse::header(const std::string& name) const {
  size_t pos = 0;
  while ((pos = head.find("\r\n", pos)) != std::string::npos) {
    pos += 2;
    if (head.compare(pos, name.size(), name) == 0 && head.compare(pos + name.size(), 1, ":") == 0) {
      size_t start = head.find_first_not_of(' ', pos + name.size() + 1);
      size_t end = head.find("\r\n", start);
      return head.substr(start, end - start);
    }
  }
  return "";
}

// One request on a fresh connection.
inline std::optional<HttpResponse> request(uint16_t port, const std::string& method, const std::string& path,
                                           const std::string& body = "") {
  HttpConnection conn(port);
  if (!conn.connected()) return std::nullopt;
  std::string req = method + " " + path + " HTTP/1.1\r\nhost: admin\r\n";
  if (!body.empty() || method == "POST") req += "content-length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  if (!conn.send(req)) return std::nullopt;
  return conn.readResponse();
}

}  // namespace skiff::server::testing
