// Formatter: every operator, the default format, JSON output and parse errors.
#include <gtest/gtest.h>

#include <unistd.h>

#include "skiff/accesslog/formatter.h"

namespace skiff::accesslog {
namespace {

using namespace std::chrono_literals;

class AccessLogFormatterTest : public ::testing::Test {
 protected:
  AccessLogFormatterTest() {
    req_.add(":method", "GET");
    req_.add(":path", "/productpage?x=1");
    req_.add(":authority", "bookinfo.example.com");
    req_.add("User-Agent", "curl/8.0");
    req_.add("x-request-id", "abc-123");
    req_.add("x-forwarded-for", "10.0.0.1");
    resp_.add(":status", "200");
    resp_.add("x-envoy-upstream-service-time", "12");
    trailers_.add("grpc-status", "0");

    // 2024-03-05T06:07:08.123456789Z
    info_.start_time = std::chrono::system_clock::time_point(1709618828s + 123456789ns);
    info_.start = http::StreamInfo::Clock::time_point();
    info_.last_downstream_rx = 3ms;
    info_.first_upstream_rx = 15ms + 700us;
    info_.last_downstream_tx = 42ms;
    info_.response_code = 200;
    info_.response_code_details = "via_upstream";
    info_.bytes_received = 17;
    info_.bytes_sent = 1024;
    info_.protocol = "HTTP/1.1";
    info_.upstream_host = "10.1.2.3:9080";
    info_.upstream_cluster = "outbound|9080||productpage.default.svc.cluster.local";
    info_.upstream_local_address = "10.1.0.9:41234";
    info_.downstream_local_address = "10.1.0.9:9080";
    info_.downstream_remote_address = "10.0.0.1:55555";
    info_.downstream_direct_remote_address = "[fd00::1]:6000";
    info_.requested_server_name = "outbound_.9080_._.productpage";
    info_.route_name = "default";
    info_.attempt_count = 2;
    info_.connection_id = 77;
    info_.request_headers = &req_;
    info_.response_headers = &resp_;
    info_.response_trailers = &trailers_;
  }

  std::string fmt(std::string_view f) {
    std::string error;
    auto formatter = Formatter::parse(f, &error);
    EXPECT_NE(formatter, nullptr) << error;
    if (!formatter) return "<parse error: " + error + ">";
    std::string out;
    formatter->format(info_, out);
    return out;
  }

  std::string parseError(std::string_view f) {
    std::string error;
    EXPECT_EQ(Formatter::parse(f, &error), nullptr) << f;
    return error;
  }

  http::HeaderMap req_, resp_, trailers_;
  http::StreamInfo info_;
};

TEST_F(AccessLogFormatterTest, StartTime) {
  EXPECT_EQ(fmt("%START_TIME%"), "2024-03-05T06:07:08.123Z");
  EXPECT_EQ(fmt("%START_TIME(%Y/%m/%d %H:%M:%S)%"), "2024/03/05 06:07:08");
  EXPECT_EQ(fmt("%START_TIME(%s.%3f)%"), "1709618828.123");
  EXPECT_EQ(fmt("%START_TIME(%s.%6f)%"), "1709618828.123456");
  EXPECT_EQ(fmt("%START_TIME(%f)%"), "123456789");
  EXPECT_EQ(fmt("%START_TIME(%H:%M:%E6S)%"), "06:07:08.123456");
  EXPECT_EQ(fmt("%START_TIME(%Y-%m-%dT%H:%M:%E3SZ)%"), "2024-03-05T06:07:08.123Z");
  EXPECT_EQ(fmt("%START_TIME(100%%)%"), "100%");
}

TEST_F(AccessLogFormatterTest, Headers) {
  EXPECT_EQ(fmt("%REQ(:METHOD)% %REQ(:PATH)% %REQ(:AUTHORITY)%"),
            "GET /productpage?x=1 bookinfo.example.com");
  EXPECT_EQ(fmt("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"), "/productpage?x=1");
  req_.add("x-envoy-original-path", "/orig");
  EXPECT_EQ(fmt("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"), "/orig");
  EXPECT_EQ(fmt("%REQ(user-agent)% %REQ(USER-AGENT):4%"), "curl/8.0 curl");
  EXPECT_EQ(fmt("%REQ(X-MISSING)%|%REQ(X-MISSING?X-ALSO-MISSING)%"), "-|-");
  EXPECT_EQ(fmt("%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% %RESP(:STATUS)% %RESP(X-NONE)%"), "12 200 -");
  EXPECT_EQ(fmt("%TRAILER(GRPC-STATUS)% %TRAILER(GRPC-MESSAGE)%"), "0 -");
  info_.response_headers = nullptr;
  info_.response_trailers = nullptr;
  EXPECT_EQ(fmt("%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% %TRAILER(GRPC-STATUS)%"), "- -");
}

TEST_F(AccessLogFormatterTest, ResponseAndTimings) {
  EXPECT_EQ(fmt("%RESPONSE_CODE% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%"),
            "200 via_upstream -");
  EXPECT_EQ(fmt("%RESPONSE_FLAGS% %RESPONSE_FLAGS_LONG%"), "- -");
  info_.setFlag(http::ResponseFlag::kUpstreamConnectionFailure);
  info_.setFlag(http::ResponseFlag::kNoHealthyUpstream);
  EXPECT_EQ(fmt("%RESPONSE_FLAGS% %RESPONSE_FLAGS_LONG%"),
            "UH,UF NoHealthyUpstream,UpstreamConnectionFailure");
  EXPECT_EQ(fmt("%DURATION% %REQUEST_DURATION% %RESPONSE_DURATION% %RESPONSE_TX_DURATION%"), "42 3 15 26");
  info_.first_upstream_rx.reset();
  EXPECT_EQ(fmt("%RESPONSE_DURATION% %RESPONSE_TX_DURATION%"), "- -");
  EXPECT_EQ(fmt("%BYTES_RECEIVED% %BYTES_SENT% %PROTOCOL%"), "17 1024 HTTP/1.1");
  info_.response_code = 0;
  info_.protocol = "";
  EXPECT_EQ(fmt("%RESPONSE_CODE% %PROTOCOL%"), "0 -");
}

TEST_F(AccessLogFormatterTest, PeersAndIds) {
  EXPECT_EQ(fmt("%UPSTREAM_HOST% %UPSTREAM_CLUSTER% %UPSTREAM_CLUSTER_RAW%"),
            "10.1.2.3:9080 outbound|9080||productpage.default.svc.cluster.local "
            "outbound|9080||productpage.default.svc.cluster.local");
  EXPECT_EQ(fmt("%UPSTREAM_LOCAL_ADDRESS% %UPSTREAM_TRANSPORT_FAILURE_REASON%"), "10.1.0.9:41234 -");
  EXPECT_EQ(fmt("%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
            "10.0.0.1:55555 10.0.0.1");
  EXPECT_EQ(fmt("%DOWNSTREAM_DIRECT_REMOTE_ADDRESS% %DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%"),
            "[fd00::1]:6000 fd00::1");
  EXPECT_EQ(fmt("%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%"),
            "10.1.0.9:9080 10.1.0.9");
  EXPECT_EQ(fmt("%REQUESTED_SERVER_NAME% %ROUTE_NAME%"), "outbound_.9080_._.productpage default");
  EXPECT_EQ(fmt("%UPSTREAM_REQUEST_ATTEMPT_COUNT% %CONNECTION_ID%"), "2 77");
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  EXPECT_EQ(fmt("%HOSTNAME%"), host);
  EXPECT_EQ(fmt("100%% %DYNAMIC_METADATA(istio.mixer:x)% %FILTER_STATE(a.b)%"), "100% - -");
  info_.route_name.clear();
  info_.upstream_host.clear();
  EXPECT_EQ(fmt("%ROUTE_NAME% \"%UPSTREAM_HOST%\""), "- \"-\"");
}

TEST_F(AccessLogFormatterTest, DefaultFormatLine) {
  EXPECT_EQ(fmt(Formatter::defaultFormat()),
            "[2024-03-05T06:07:08.123Z] \"GET /productpage?x=1 HTTP/1.1\" 200 - 17 1024 42 12 "
            "\"10.0.0.1\" \"curl/8.0\" \"abc-123\" \"bookinfo.example.com\" \"10.1.2.3:9080\"\n");
}

TEST_F(AccessLogFormatterTest, IstioDefaultFormatParses) {
  constexpr std::string_view kIstio =
      "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% "
      "%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
      "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
      "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
      "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% "
      "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
      "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";
  EXPECT_EQ(
      fmt(kIstio),
      "[2024-03-05T06:07:08.123Z] \"GET /productpage?x=1 HTTP/1.1\" 200 - via_upstream - \"-\" 17 1024 42 12 "
      "\"10.0.0.1\" \"curl/8.0\" \"abc-123\" \"bookinfo.example.com\" \"10.1.2.3:9080\" "
      "outbound|9080||productpage.default.svc.cluster.local 10.1.0.9:41234 10.1.0.9:9080 10.0.0.1:55555 "
      "outbound_.9080_._.productpage default\n");
}

TEST_F(AccessLogFormatterTest, ParseErrors) {
  EXPECT_NE(parseError("%NOT_AN_OPERATOR%").find("'NOT_AN_OPERATOR'"), std::string::npos);
  EXPECT_NE(parseError("%RESPONSE_CODE").find("unterminated"), std::string::npos);
  EXPECT_NE(parseError("50% off").find("offset 2"), std::string::npos);
  EXPECT_NE(parseError("%REQ%").find("needs a header"), std::string::npos);
  EXPECT_NE(parseError("%REQ()%").find("bad header"), std::string::npos);
  EXPECT_NE(parseError("%REQ(A?)%").find("bad header"), std::string::npos);
  EXPECT_NE(parseError("%REQ(:PATH%").find("unterminated arguments"), std::string::npos);
  EXPECT_NE(parseError("%REQ(:PATH):x%").find("REQ"), std::string::npos);
  EXPECT_NE(parseError("%RESPONSE_CODE:x%").find("bad length"), std::string::npos);
  EXPECT_NE(parseError("%DURATION(x)%").find("takes no arguments"), std::string::npos);
  EXPECT_NE(parseError("%RESPONSE_CODE#").find("RESPONSE_CODE"), std::string::npos);
}

TEST_F(AccessLogFormatterTest, JsonFormat) {
  std::string error;
  req_.add("x-quote", "a\"b\\c\nd\x01");
  auto f = Formatter::parseJson({{"method", "%REQ(:METHOD)%"},
                                 {"response_code", "%RESPONSE_CODE%"},
                                 {"duration", "%DURATION%"},
                                 {"upstream_transport_failure_reason", "%UPSTREAM_TRANSPORT_FAILURE_REASON%"},
                                 {"quoted", "%REQ(X-QUOTE)%"},
                                 {"mixed", "%REQ(:METHOD)% %REQ(X-NONE)% %RESPONSE_CODE%"},
                                 {"literal", "fixed"},
                                 {"k\"ey", "%PROTOCOL%"}},
                                &error);
  ASSERT_NE(f, nullptr) << error;
  std::string out;
  f->format(info_, out);
  EXPECT_EQ(out,
            "{\"method\":\"GET\",\"response_code\":200,\"duration\":42,"
            "\"upstream_transport_failure_reason\":null,\"quoted\":\"a\\\"b\\\\c\\nd\\u0001\","
            "\"mixed\":\"GET - 200\",\"literal\":\"fixed\",\"k\\\"ey\":\"HTTP/1.1\"}\n");
  EXPECT_EQ(Formatter::parseJson({{"a", "%BOGUS%"}}, &error), nullptr);
  EXPECT_NE(error.find("'BOGUS'"), std::string::npos);
  EXPECT_NE(error.find("key 'a'"), std::string::npos);
}

TEST_F(AccessLogFormatterTest, FormatAppends) {
  std::string error;
  auto f = Formatter::parse("%RESPONSE_CODE%\n", &error);
  std::string out = "prefix ";
  f->format(info_, out);
  f->format(info_, out);
  EXPECT_EQ(out, "prefix 200\n200\n");
}

}  // namespace
}  // namespace skiff::accesslog
