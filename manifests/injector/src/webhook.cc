// webhook: AdmissionReview handling, and a small HTTPS/1.1 server (OpenSSL) to serve it.
#include "skiff/inject/webhook.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>

#include "skiff/inject/injector.h"
#include "skiff/inject/json_patch.h"

namespace skiff::inject {
namespace {

HttpReply badRequest(std::string message) {
  return HttpReply{400, "text/plain; charset=utf-8", std::move(message) + "\n"};
}

std::string base64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(n);
  return out;
}

}  // namespace

HttpReply handleAdmissionReview(std::string_view body, const InjectConfig& config) {
  if (body.empty()) return badRequest("empty body: want an admission.k8s.io/v1 AdmissionReview");
  Value review;
  std::string error;
  if (!parseJson(body, &review, &error)) return badRequest("body is not JSON: " + error);
  if (!review.isObject() || review.getString("kind") != "AdmissionReview") {
    return badRequest("not an AdmissionReview (kind must be AdmissionReview)");
  }
  std::string api = review.getString("apiVersion");
  if (api != "admission.k8s.io/v1" && api != "admission.k8s.io/v1beta1") {
    return badRequest("unsupported apiVersion '" + api + "' (want admission.k8s.io/v1)");
  }
  const Value* request = review.find("request");
  if (request == nullptr || !request->isObject()) return badRequest("AdmissionReview has no request");
  const Value* uid = request->find("uid");
  if (uid == nullptr || !uid->isString() || uid->asString().empty())
    return badRequest("request.uid is missing");
  const Value* object = request->find("object");
  if (object == nullptr || !object->isObject()) return badRequest("request.object is missing");

  Value response = Value::object();
  response.set("uid", *uid);
  response.set("allowed", true);
  const Value* kind = request->at({"kind", "kind"});
  bool is_pod = (kind != nullptr && kind->isString() && kind->asString() == "Pod") ||
                (kind == nullptr && object->getString("kind") == "Pod");
  if (is_pod) {
    Value pod = *object;
    // Pods in a review often lack kind/apiVersion; the injector needs them to find the spec.
    if (pod.find("kind") == nullptr) pod.set("kind", "Pod");
    if (pod.find("apiVersion") == nullptr) pod.set("apiVersion", "v1");
    Value before = pod;
    Decision decision;
    std::string ns = request->getString("namespace", "default");
    if (!injectObject(&pod, config, &decision, &error, ns)) {
      response.set("allowed", false);
      Value status = Value::object();
      status.set("code", 400);
      status.set("reason", "BadRequest");
      status.set("message", "skiff-inject: " + error);
      response.set("result", status);
    } else if (decision == Decision::kInjected) {
      Value patch = jsonPatchDiff(before, pod);
      response.set("patchType", "JSONPatch");
      response.set("patch", base64(toJson(patch)));
    }
  }
  Value out = Value::object();
  out.set("apiVersion", api);
  out.set("kind", "AdmissionReview");
  out.set("response", response);
  return HttpReply{200, "application/json", toJson(out)};
}

namespace {

struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslDeleter {
  void operator()(SSL* s) const { SSL_free(s); }
};

std::string sslError() {
  char buf[256];
  unsigned long e = ERR_get_error();
  if (e == 0) return "unknown TLS error";
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

bool writeAll(SSL* ssl, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    int n = SSL_write(ssl, data.data() + off, static_cast<int>(data.size() - off));
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Payload Too Large";
    default:
      return "Error";
  }
}

bool sendReply(SSL* ssl, const HttpReply& r, bool keep_alive) {
  std::string head = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) +
                     "\r\nContent-Type: " + r.content_type +
                     "\r\nContent-Length: " + std::to_string(r.body.size()) +
                     "\r\nConnection: " + (keep_alive ? "keep-alive" : "close") + "\r\n\r\n";
  return writeAll(ssl, head + r.body);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// One connection: HTTP/1.1 requests with Content-Length bodies, until close, error or timeout.
void serveConnection(int fd, SSL_CTX* ctx, const WebhookOptions& opt, const InjectConfig& config) {
  timeval tv{opt.io_timeout_ms / 1000, (opt.io_timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  std::unique_ptr<SSL, SslDeleter> ssl(SSL_new(ctx));
  if (!ssl) {
    close(fd);
    return;
  }
  SSL_set_fd(ssl.get(), fd);
  if (SSL_accept(ssl.get()) != 1) {
    close(fd);
    return;
  }
  std::string buf;
  char chunk[16384];
  bool open = true;
  while (open) {
    size_t header_end;
    while ((header_end = buf.find("\r\n\r\n")) == std::string::npos) {
      if (buf.size() > 64 * 1024) {
        sendReply(ssl.get(), HttpReply{400, "text/plain", "request header too large\n"}, false);
        open = false;
        break;
      }
      int n = SSL_read(ssl.get(), chunk, sizeof(chunk));
      if (n <= 0) {
        open = false;
        break;
      }
      buf.append(chunk, static_cast<size_t>(n));
    }
    if (!open) break;
    std::string head = buf.substr(0, header_end);
    buf.erase(0, header_end + 4);
    size_t line_end = head.find("\r\n");
    std::string request_line = head.substr(0, line_end);
    std::string method = request_line.substr(0, request_line.find(' '));
    size_t path_start = request_line.find(' ');
    std::string path =
        path_start == std::string::npos
            ? ""
            : request_line.substr(path_start + 1, request_line.find(' ', path_start + 1) - path_start - 1);
    size_t content_length = 0;
    bool keep_alive = request_line.find("HTTP/1.1") != std::string::npos;
    bool chunked = false;
    bool bad_length = false;
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t eol = head.find("\r\n", pos);
      if (eol == std::string::npos) eol = head.size();
      std::string line = head.substr(pos, eol - pos);
      pos = eol + 2;
      size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = lower(line.substr(0, colon));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      if (name == "content-length") {
        char* end = nullptr;
        unsigned long long v = std::strtoull(value.c_str(), &end, 10);
        if (end == value.c_str() || *end != '\0') bad_length = true;
        content_length = static_cast<size_t>(v);
      } else if (name == "connection") {
        std::string v = lower(value);
        if (v == "close") keep_alive = false;
        if (v == "keep-alive") keep_alive = true;
      } else if (name == "transfer-encoding") {
        chunked = true;
      }
    }
    if (chunked || bad_length) {
      sendReply(ssl.get(), badRequest(chunked ? "chunked bodies are not supported" : "bad Content-Length"),
                false);
      break;
    }
    if (content_length > opt.max_body) {
      sendReply(ssl.get(), HttpReply{413, "text/plain", "body too large\n"}, false);
      break;
    }
    while (buf.size() < content_length) {
      int n = SSL_read(ssl.get(), chunk, sizeof(chunk));
      if (n <= 0) {
        open = false;
        break;
      }
      buf.append(chunk, static_cast<size_t>(n));
    }
    if (!open) break;
    std::string body = buf.substr(0, content_length);
    buf.erase(0, content_length);
    HttpReply reply;
    if (method == "GET" && (path == "/healthz" || path == "/ready" || path == "/healthz/ready")) {
      reply = HttpReply{200, "text/plain", "ok\n"};
    } else if (method == "POST") {
      reply = handleAdmissionReview(body, config);
    } else if (method == "GET") {
      reply = HttpReply{404, "text/plain", "not found\n"};
    } else {
      reply = HttpReply{405, "text/plain", "use POST with an AdmissionReview\n"};
    }
    if (!sendReply(ssl.get(), reply, keep_alive) || !keep_alive) break;
  }
  SSL_shutdown(ssl.get());
  close(fd);
}

bool splitHostPort(const std::string& listen, std::string* host, std::string* port) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return false;
  *host = listen.substr(0, colon);
  *port = listen.substr(colon + 1);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']')
    *host = host->substr(1, host->size() - 2);
  return !port->empty();
}

}  // namespace

bool serveWebhook(const WebhookOptions& opt, const InjectConfig& config, const std::atomic<bool>& stop,
                  std::string* error, std::string* bound) {
  std::unique_ptr<SSL_CTX, SslCtxDeleter> ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) {
    *error = "SSL_CTX_new: " + sslError();
    return false;
  }
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), opt.cert_file.c_str()) != 1) {
    *error = "cannot load certificate " + opt.cert_file + ": " + sslError();
    return false;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), opt.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    *error = "cannot load key " + opt.key_file + ": " + sslError();
    return false;
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    *error = "key " + opt.key_file + " does not match certificate " + opt.cert_file;
    return false;
  }
  static const unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_select_cb(
      ctx.get(),
      [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
         void*) -> int {
        unsigned char* sel;
        if (SSL_select_next_proto(&sel, outlen, kAlpn, sizeof(kAlpn), in, inlen) == OPENSSL_NPN_NEGOTIATED) {
          *out = sel;
          return SSL_TLSEXT_ERR_OK;
        }
        return SSL_TLSEXT_ERR_NOACK;
      },
      nullptr);

  std::string host, port;
  if (!splitHostPort(opt.listen, &host, &port)) {
    *error = "--listen wants host:port, got '" + opt.listen + "'";
    return false;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    *error = "cannot resolve " + opt.listen + ": " + gai_strerror(rc);
    return false;
  }
  int lfd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (lfd < 0 || bind(lfd, res->ai_addr, res->ai_addrlen) != 0 || listen(lfd, 64) != 0) {
    *error = "cannot listen on " + opt.listen + ": " + std::strerror(errno);
    freeaddrinfo(res);
    if (lfd >= 0) close(lfd);
    return false;
  }
  freeaddrinfo(res);
  sockaddr_storage ss{};
  socklen_t sl = sizeof(ss);
  getsockname(lfd, reinterpret_cast<sockaddr*>(&ss), &sl);
  char addr[INET6_ADDRSTRLEN] = "";
  int bound_port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, addr, sizeof(addr));
    bound_port = ntohs(a->sin_port);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, addr, sizeof(addr));
    bound_port = ntohs(a->sin6_port);
  }
  std::string where = std::string(ss.ss_family == AF_INET6 ? "[" : "") + addr +
                      (ss.ss_family == AF_INET6 ? "]" : "") + ":" + std::to_string(bound_port);
  if (bound != nullptr) *bound = where;
  std::fprintf(stderr, "skiff-inject: webhook listening on https://%s\n", where.c_str());
  struct Shared {
    std::unique_ptr<SSL_CTX, SslCtxDeleter> ctx;
    WebhookOptions opt;
    InjectConfig config;
  };
  auto shared = std::make_shared<const Shared>(Shared{std::move(ctx), opt, config});
  auto active = std::make_shared<std::atomic<int>>(0);

  while (!stop.load()) {
    pollfd p{lfd, POLLIN, 0};
    int rc = poll(&p, 1, 200);
    if (rc <= 0) continue;
    int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    // Connections are few (the API server's); a detached thread each keeps one slow peer from blocking
    // others. Each holds its own copy of what it uses, so returning from here never pulls anything from under
    // it.
    active->fetch_add(1);
    std::thread([fd, shared, active] {
      serveConnection(fd, shared->ctx.get(), shared->opt, shared->config);
      OPENSSL_thread_stop();  // this thread's OpenSSL state, before the count says it is done
      active->fetch_sub(1);
    }).detach();
  }
  close(lfd);
  // Let requests in flight finish (each is bounded by the I/O timeout) so shutdown never cuts a review short.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(opt.io_timeout_ms + 1000);
  while (active->load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace skiff::inject
