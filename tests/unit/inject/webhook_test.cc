// AdmissionReview handling (no network): the patch equals the CLI's injection, bad reviews get 400.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include "skiff/inject/injector.h"
#include "skiff/inject/json_patch.h"
#include "skiff/inject/webhook.h"

namespace skiff::inject {
namespace {

constexpr const char* kPod =
    R"({"metadata":{"name":"p","labels":{"app":"a"}},"spec":{"containers":[{"name":"app","image":"i"}]}})";

std::string review(const std::string& object, const char* api = "admission.k8s.io/v1") {
  return std::string(R"({"apiVersion":")") + api +
         R"(","kind":"AdmissionReview","request":{"uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},)"
         R"("namespace":"shop","operation":"CREATE","object":)" +
         object + "}}";
}

Value parse(const std::string& s) {
  Value v;
  std::string error;
  EXPECT_TRUE(parseJson(s, &v, &error)) << error << ": " << s;
  return v;
}

std::string unbase64(const std::string& in) {
  std::string out(in.size(), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(n);
  while (!out.empty() && out.back() == '\0') out.pop_back();  // padding
  return out;
}

TEST(WebhookTest, PatchEqualsCliInjection) {
  HttpReply r = handleAdmissionReview(review(kPod), InjectConfig{});
  ASSERT_EQ(r.status, 200) << r.body;
  Value resp = parse(r.body);
  EXPECT_EQ(resp.getString("apiVersion"), "admission.k8s.io/v1");
  const Value& response = *resp.find("response");
  EXPECT_EQ(response.getString("uid"), "u-1");
  EXPECT_TRUE(response.find("allowed")->asBool());
  EXPECT_EQ(response.getString("patchType"), "JSONPatch");
  Value patch = parse(unbase64(response.getString("patch")));
  Value pod = parse(kPod);
  pod.set("kind", "Pod");
  pod.set("apiVersion", "v1");
  Value patched = pod;
  std::string error;
  ASSERT_TRUE(applyJsonPatch(patch, &patched, &error)) << error;
  Value expected = pod;
  Decision d;
  ASSERT_TRUE(injectObject(&expected, InjectConfig{}, &d, &error, "shop")) << error;
  EXPECT_EQ(patched, expected);
}

TEST(WebhookTest, OptedOutIsAllowedWithoutPatch) {
  std::string pod = R"({"metadata":{"name":"p","annotations":{"sidecar.istio.io/inject":"false"}},)"
                    R"("spec":{"containers":[{"name":"app","image":"i"}]}})";
  HttpReply r = handleAdmissionReview(review(pod), InjectConfig{});
  ASSERT_EQ(r.status, 200);
  Value parsed = parse(r.body);
  const Value& response = *parsed.find("response");
  EXPECT_TRUE(response.find("allowed")->asBool());
  EXPECT_EQ(response.find("patch"), nullptr);
}

TEST(WebhookTest, BadAnnotationIsDeniedWithItsName) {
  std::string pod =
      R"({"metadata":{"name":"p","annotations":{"traffic.sidecar.istio.io/excludeOutboundPorts":"x"}},)"
      R"("spec":{"containers":[{"name":"app","image":"i"}]}})";
  HttpReply r = handleAdmissionReview(review(pod), InjectConfig{});
  ASSERT_EQ(r.status, 200);
  Value parsed = parse(r.body);
  const Value& response = *parsed.find("response");
  EXPECT_FALSE(response.find("allowed")->asBool());
  EXPECT_NE(
      response.at({"result", "message"})->asString().find("traffic.sidecar.istio.io/excludeOutboundPorts"),
      std::string::npos);
}

TEST(WebhookTest, MalformedReviewsAre400) {
  for (const std::string& body :
       {std::string(""), std::string("{"), std::string(R"({"kind":"Pod"})"),
        std::string(R"({"apiVersion":"admission.k8s.io/v9","kind":"AdmissionReview"})"),
        std::string(R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"})"),
        std::string(R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",)"
                    R"("request":{"object":{}}})")}) {
    HttpReply r = handleAdmissionReview(body, InjectConfig{});
    EXPECT_EQ(r.status, 400) << body;
    EXPECT_FALSE(r.body.empty());
  }
}

TEST(WebhookTest, NonPodObjectsPassWithoutPatch) {
  std::string body =
      R"({"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x",)"
      R"("kind":{"kind":"Service"},"object":{"kind":"Service","metadata":{"name":"s"}}}})";
  HttpReply r = handleAdmissionReview(body, InjectConfig{});
  ASSERT_EQ(r.status, 200);
  Value resp = parse(r.body);
  EXPECT_EQ(resp.getString("apiVersion"), "admission.k8s.io/v1beta1");
  EXPECT_EQ(resp.at({"response", "patch"}), nullptr);
}

}  // namespace
}  // namespace skiff::inject

namespace skiff::inject {
namespace {

// Byte mutations of a valid review (a fixed-seed generator, so failures reproduce): every answer is a 200 or
// a 400 with a body; nothing crashes or hangs.
TEST(WebhookTest, MutatedReviewsNeverCrash) {
  const std::string base = review(
      R"({"metadata":{"name":"p","annotations":{"sidecar.istio.io/userVolume":"[{\"name\":\"v\",\"configMap\":{}}]",)"
      R"("proxy.istio.io/config":"concurrency: 2"}},"spec":{"containers":[{"name":"app","ports":[{"containerPort":1}]}]}})");
  uint64_t state = 42;
  auto next = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<size_t>(state >> 33);
  };
  const char alphabet[] = "{}[]\":,\\ 0123456789aetruflsn-.";
  for (int i = 0; i < 3000; ++i) {
    std::string s = base;
    for (int m = 0, n = 1 + static_cast<int>(next() % 4); m < n; ++m) {
      size_t pos = next() % s.size();
      switch (next() % 3) {
        case 0:
          s.erase(pos, 1 + next() % 6);
          break;
        case 1:
          s.insert(pos, 1, alphabet[next() % (sizeof(alphabet) - 1)]);
          break;
        default:
          s[pos] = alphabet[next() % (sizeof(alphabet) - 1)];
      }
      if (s.empty()) s = "{";
    }
    HttpReply r = handleAdmissionReview(s, InjectConfig{});
    ASSERT_TRUE(r.status == 200 || r.status == 400) << s;
    ASSERT_FALSE(r.body.empty());
  }
}

}  // namespace
}  // namespace skiff::inject
