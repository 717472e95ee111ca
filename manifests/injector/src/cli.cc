// cli: parses skiff-inject's subcommands and runs them.
#include "skiff/inject/cli.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "skiff/inject/injector.h"
#include "skiff/inject/webhook.h"
#include "skiff/inject/yaml_io.h"

namespace skiff::inject {
namespace {

std::atomic<bool> g_stop{false};

const char* kUsage =
    "usage:\n"
    "  skiff-inject inject [-f FILE|-] [-o FILE] [--config FILE] [--native-sidecars] [--image IMAGE]\n"
    "      Kubernetes YAML (multi-document; Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, "
    "CronJob,\n"
    "      List) in, injected YAML out. Other kinds and opted-out pods pass through unchanged.\n"
    "  skiff-inject webhook --cert FILE --key FILE [--listen HOST:PORT] [--config FILE]\n"
    "      HTTPS mutating admission webhook (admission.k8s.io/v1 AdmissionReview -> JSONPatch). Default\n"
    "      listen address 0.0.0.0:15017.\n"
    "  skiff-inject wait [--url http://127.0.0.1:15021/healthz/ready] [--timeout 60s]\n"
    "      Blocks until the sidecar answers 200 (the holdApplicationUntilProxyStarts postStart hook).\n"
    "--config: the injection config, a YAML mapping (see manifests/README.md) or a ConfigMap holding it "
    "under\n"
    "data.config.\n";

int usage(const std::string& why) {
  std::cerr << "skiff-inject: " << why << "\n" << kUsage;
  return 2;
}

bool readFile(const std::string& path, std::string* out, std::string* error) {
  if (path == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    *out = ss.str();
    return true;
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    *error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

bool loadConfigFile(const std::string& path, InjectConfig* config, std::string* error) {
  std::string text;
  if (!readFile(path, &text, error)) return false;
  Value v;
  if (!parseYaml(text, &v, error)) {
    *error = path + ": " + *error;
    return false;
  }
  if (v.isObject() && v.getString("kind") == "ConfigMap") {
    const Value* data = v.at({"data", "config"});
    if (data == nullptr || !data->isString()) {
      *error = path + ": the ConfigMap has no data.config";
      return false;
    }
    if (!parseYaml(data->asString(), &v, error)) {
      *error = path + ": data.config: " + *error;
      return false;
    }
  }
  if (!loadInjectConfig(v, config, error)) {
    *error = path + ": " + *error;
    return false;
  }
  return true;
}

// Flags shared by inject and webhook; returns false (after printing) on a bad one.
bool commonFlag(const std::vector<std::string>& args, size_t* i, InjectConfig* config, bool* handled,
                int* rc) {
  const std::string& a = args[*i];
  *handled = true;
  auto value = [&]() -> const std::string* {
    if (*i + 1 >= args.size()) return nullptr;
    return &args[++*i];
  };
  std::string error;
  if (a == "--config") {
    const std::string* v = value();
    if (v == nullptr) return (*rc = usage("--config needs a file")), false;
    if (!loadConfigFile(*v, config, &error)) {
      std::cerr << "skiff-inject: " << error << "\n";
      return (*rc = 1), false;
    }
  } else if (a == "--native-sidecars") {
    config->native_sidecars = true;
  } else if (a == "--image") {
    const std::string* v = value();
    if (v == nullptr) return (*rc = usage("--image needs a value")), false;
    config->proxy_image = *v;
  } else {
    *handled = false;
  }
  return true;
}

int runInject(const std::vector<std::string>& args) {
  InjectConfig config;
  std::string in = "-", out;
  for (size_t i = 1; i < args.size(); ++i) {
    bool handled;
    int rc = 0;
    if (!commonFlag(args, &i, &config, &handled, &rc)) return rc;
    if (handled) continue;
    if ((args[i] == "-f" || args[i] == "--filename") && i + 1 < args.size()) {
      in = args[++i];
    } else if (args[i] == "-o" && i + 1 < args.size()) {
      out = args[++i];
    } else {
      return usage("inject: unknown or incomplete flag '" + args[i] + "'");
    }
  }
  std::string text, result, error;
  if (!readFile(in, &text, &error)) {
    std::cerr << "skiff-inject: " << error << "\n";
    return 1;
  }
  if (!injectYaml(text, config, &result, &error)) {
    std::cerr << "skiff-inject: " << (in == "-" ? "stdin" : in) << ": " << error << "\n";
    return 1;
  }
  if (out.empty()) {
    std::cout << result;
    std::cout.flush();
    return std::cout ? 0 : 1;
  }
  // Write-then-rename: a failure never leaves a half-written file behind.
  std::string tmp = out + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << result;
    if (!f.flush()) {
      std::cerr << "skiff-inject: cannot write " << tmp << "\n";
      std::remove(tmp.c_str());
      return 1;
    }
  }
  if (std::rename(tmp.c_str(), out.c_str()) != 0) {
    std::cerr << "skiff-inject: cannot rename " << tmp << " to " << out << ": " << std::strerror(errno)
              << "\n";
    std::remove(tmp.c_str());
    return 1;
  }
  return 0;
}

int runWebhook(const std::vector<std::string>& args) {
  InjectConfig config;
  WebhookOptions opt;
  for (size_t i = 1; i < args.size(); ++i) {
    bool handled;
    int rc = 0;
    if (!commonFlag(args, &i, &config, &handled, &rc)) return rc;
    if (handled) continue;
    if (args[i] == "--cert" && i + 1 < args.size()) {
      opt.cert_file = args[++i];
    } else if (args[i] == "--key" && i + 1 < args.size()) {
      opt.key_file = args[++i];
    } else if (args[i] == "--listen" && i + 1 < args.size()) {
      opt.listen = args[++i];
    } else {
      return usage("webhook: unknown or incomplete flag '" + args[i] + "'");
    }
  }
  if (opt.cert_file.empty() || opt.key_file.empty()) return usage("webhook needs --cert and --key");
  std::signal(SIGTERM, [](int) { g_stop = true; });
  std::signal(SIGINT, [](int) { g_stop = true; });
  std::signal(SIGPIPE, SIG_IGN);
  std::string error;
  if (!serveWebhook(opt, config, g_stop, &error)) {
    std::cerr << "skiff-inject: " << error << "\n";
    return 1;
  }
  return 0;
}

// GET url once; true on a 200.
bool probe(const std::string& host, const std::string& port, const std::string& path) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0) return false;
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool ok = false;
  timeval tv{1, 0};
  if (fd >= 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
    std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n";
    if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[64] = {};
      ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
      ok = n >= 12 && std::string_view(buf, 12).substr(9, 3) == "200";
    }
  }
  if (fd >= 0) close(fd);
  freeaddrinfo(res);
  return ok;
}

int runWait(const std::vector<std::string>& args) {
  std::string url = "http://127.0.0.1:15021/healthz/ready";
  double timeout = 60;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--url" && i + 1 < args.size()) {
      url = args[++i];
    } else if (args[i] == "--timeout" && i + 1 < args.size()) {
      if (!parseDuration(args[++i], &timeout)) return usage("wait: bad --timeout '" + args[i] + "'");
    } else {
      return usage("wait: unknown or incomplete flag '" + args[i] + "'");
    }
  }
  if (url.rfind("http://", 0) != 0) return usage("wait: --url must be http://host:port/path");
  std::string rest = url.substr(7);
  size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  size_t colon = hostport.rfind(':');
  std::string host = colon == std::string::npos ? hostport : hostport.substr(0, colon);
  std::string port = colon == std::string::npos ? "80" : hostport.substr(colon + 1);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
  while (true) {
    if (probe(host, port, path)) return 0;
    if (std::chrono::steady_clock::now() >= deadline) {
      std::cerr << "skiff-inject: " << url << " not ready after " << timeout << "s\n";
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // polling interval, not synchronisation
  }
}

}  // namespace

int runCli(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "inject") return runInject(args);
  if (args[0] == "webhook") return runWebhook(args);
  if (args[0] == "wait") return runWait(args);
  return usage("unknown subcommand '" + args[0] + "'");
}

}  // namespace skiff::inject
