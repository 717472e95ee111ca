// Shared helpers for upstream tests: JSON configs, loop polling with a deadline, a scriptable DNS server.
#pragma once

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <asio/ip/udp.hpp>

#include <array>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "envoy/config/cluster/v3/cluster.pb.h"

namespace skiff::upstream::test {

inline envoy::config::cluster::v3::Cluster clusterFromJson(const std::string& json) {
  envoy::config::cluster::v3::Cluster cluster;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &cluster);
  EXPECT_TRUE(status.ok()) << status.ToString();
  return cluster;
}

// Runs `loop` until `done()` or the deadline; returns done().
inline bool runUntil(asio::io_context& loop, const std::function<bool()>& done,
                     std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (!done() && std::chrono::steady_clock::now() < end) {
    loop.restart();
    loop.run_one_for(std::chrono::milliseconds(20));
  }
  return done();
}

// A UDP DNS server on 127.0.0.1 answering A queries with `ipv4` (AAAA: no data), or with `rcode` when set.
class FakeDnsServer {
 public:
  explicit FakeDnsServer(asio::io_context& loop)
      : socket_(loop, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    receive();
  }
  uint16_t port() const { return socket_.local_endpoint().port(); }
  std::vector<std::array<uint8_t, 4>> ipv4;
  uint8_t rcode = 0;
  uint32_t ttl = 30;
  int queries = 0;

 private:
  void receive() {
    socket_.async_receive_from(asio::buffer(buf_), peer_, [this](std::error_code ec, size_t n) {
      if (ec) return;
      answer(n);
      receive();
    });
  }

  void answer(size_t n) {
    if (n < 12) return;
    ++queries;
    size_t pos = 12;
    while (pos < n && buf_[pos] != 0) pos += buf_[pos] + 1;
    pos += 1;  // root label
    if (pos + 4 > n) return;
    const uint16_t qtype = static_cast<uint16_t>(buf_[pos] << 8 | buf_[pos + 1]);
    pos += 4;
    std::vector<uint8_t> out(buf_.begin(), buf_.begin() + pos);  // header + question
    const bool with_answers = rcode == 0 && qtype == 1;
    const uint16_t count = with_answers ? static_cast<uint16_t>(ipv4.size()) : 0;
    out[2] = 0x81;                                // QR, RD
    out[3] = static_cast<uint8_t>(0x80 | rcode);  // RA + rcode
    out[6] = static_cast<uint8_t>(count >> 8);
    out[7] = static_cast<uint8_t>(count);
    out[8] = out[9] = out[10] = out[11] = 0;
    for (size_t i = 0; i < count; ++i) {
      const uint8_t rr[] = {0xc0,
                            0x0c,
                            0,
                            1,
                            0,
                            1,
                            static_cast<uint8_t>(ttl >> 24),
                            static_cast<uint8_t>(ttl >> 16),
                            static_cast<uint8_t>(ttl >> 8),
                            static_cast<uint8_t>(ttl),
                            0,
                            4};
      out.insert(out.end(), std::begin(rr), std::end(rr));
      out.insert(out.end(), ipv4[i].begin(), ipv4[i].end());
    }
    socket_.send_to(asio::buffer(out), peer_);
  }

  asio::ip::udp::socket socket_;
  asio::ip::udp::endpoint peer_;
  std::array<uint8_t, 512> buf_{};
};

}  // namespace skiff::upstream::test
