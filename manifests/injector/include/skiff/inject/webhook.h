// The mutating admission webhook: AdmissionReview in, AdmissionReview with a JSONPatch out, over HTTPS.
#pragma once

#include <atomic>
#include <string>
#include <string_view>

#include "skiff/inject/settings.h"

namespace skiff::inject {

struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// Answers one admission.k8s.io/v1 (or v1beta1) AdmissionReview carrying a Pod. A review that cannot be read
// gets 400 and a plain-text reason; an opted-out pod is allowed with no patch; a pod with a bad annotation is
// denied with a message naming it.
HttpReply handleAdmissionReview(std::string_view body, const InjectConfig& config);

struct WebhookOptions {
  std::string cert_file;  // PEM chain (skiff-certs workload cert-chain.pem)
  std::string key_file;
  std::string listen = "0.0.0.0:15017";
  size_t max_body = 8 << 20;
  int io_timeout_ms = 10000;
};

// Serves until `stop` becomes true: POST (any path, e.g. /inject) runs the review; GET /healthz and /ready
// answer 200. One thread per connection (the API server keeps a few connections open); keep-alive is
// honoured. Returns false with a message if it cannot start (bad certificate, address in use).
bool serveWebhook(const WebhookOptions& options, const InjectConfig& config, const std::atomic<bool>& stop,
                  std::string* error, std::string* bound = nullptr);

}  // namespace skiff::inject
