// Hot-path cost of the HTTP/1 codec: parsing a typical ~400-byte request head, a response head, a chunked
// body, and writing a request head.
#include <benchmark/benchmark.h>

#include <string>

#include "skiff/http/http1_parser.h"
#include "skiff/http/http1_writer.h"

namespace {

using namespace skiff::http1;

const std::string kRequest =
    "GET /api/v1/products/12345/reviews?page=2&sort=recent HTTP/1.1\r\n"
    "Host: reviews.default.svc.cluster.local:9080\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)\r\n"
    "Accept: application/json, text/plain, */*\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "X-Request-Id: 5c2b1c7e-4f0e-4a4b-9d0f-2b1d0c6f7a11\r\n"
    "X-B3-TraceId: 80f198ee56343ba864fe8b2a57d3eff7\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

const std::string kResponse =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 1234\r\n"
    "Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
    "Server: istio-envoy\r\n"
    "X-Envoy-Upstream-Service-Time: 12\r\n"
    "\r\n";

void BM_ParseRequestHead(benchmark::State& state) {
  RequestParser parser;
  size_t consumed = 0;
  for (auto _ : state) {
    parser.reset();
    auto s = parser.feed(kRequest, &consumed);
    benchmark::DoNotOptimize(s);
    benchmark::DoNotOptimize(parser.headers());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kRequest.size()));
  state.SetLabel(std::to_string(kRequest.size()) + " bytes");
}
BENCHMARK(BM_ParseRequestHead);

// The head arrives in 4 reads; the scan must resume, not restart.
void BM_ParseRequestHeadIn4Reads(benchmark::State& state) {
  RequestParser parser;
  size_t consumed = 0;
  const size_t step = kRequest.size() / 4 + 1;
  for (auto _ : state) {
    parser.reset();
    for (size_t n = step; n < kRequest.size(); n += step)
      parser.feed(std::string_view(kRequest).substr(0, n), &consumed);
    auto s = parser.feed(kRequest, &consumed);
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(BM_ParseRequestHeadIn4Reads);

void BM_ParseResponseHead(benchmark::State& state) {
  ResponseParser parser;
  size_t consumed = 0;
  for (auto _ : state) {
    parser.reset();
    auto s = parser.feed(kResponse, &consumed);
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(BM_ParseResponseHead);

void BM_DecodeChunkedBody(benchmark::State& state) {
  std::string body;
  const std::string chunk(1024, 'x');
  for (int i = 0; i < 16; ++i) writeChunk(chunk, body);
  writeLastChunk(nullptr, body);
  std::string out;
  out.reserve(body.size());
  size_t consumed = 0;
  for (auto _ : state) {
    out.clear();
    BodyDecoder decoder(Framing::kChunked, 0);
    auto s = decoder.decode(body, &consumed, out);
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_DecodeChunkedBody);

void BM_WriteRequestHead(benchmark::State& state) {
  RequestParser parser;
  size_t consumed = 0;
  parser.feed(kRequest, &consumed);
  std::string out;
  for (auto _ : state) {
    out.clear();
    writeRequestHead(parser.headers(), out);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_WriteRequestHead);

}  // namespace
