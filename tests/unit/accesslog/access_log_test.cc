// Sinks write whole lines (files and pipes, several workers at once); filters; AccessLog wiring.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "skiff/accesslog/access_log.h"

namespace skiff::accesslog {
namespace {

using namespace std::chrono_literals;

std::string tempPath(const char* tag) {
  return ::testing::TempDir() + "skiff_accesslog_" + tag + "_" + std::to_string(getpid());
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(AccessLogSink, FileSinkBuffersUntilThresholdOrFlush) {
  std::string path = tempPath("buffer");
  ::unlink(path.c_str());
  std::string error;
  auto file = LogFile::open(path, &error);
  ASSERT_NE(file, nullptr) << error;
  EXPECT_FALSE(file->isPipe());
  FileSink sink(file, 64);
  sink.write("first line\n");
  EXPECT_EQ(readFile(path), "");  // buffered
  sink.flush();
  EXPECT_EQ(readFile(path), "first line\n");
  std::string big(70, 'x');
  big += '\n';
  sink.write(big);  // over the threshold: written at once
  EXPECT_EQ(readFile(path), "first line\n" + big);
  EXPECT_EQ(sink.droppedBytes(), 0u);
  ::unlink(path.c_str());
}

TEST(AccessLogSink, ConcurrentWorkersWriteWholeLines) {
  std::string path = tempPath("workers");
  ::unlink(path.c_str());
  std::string error;
  auto file = LogFile::open(path, &error);
  ASSERT_NE(file, nullptr) << error;
  constexpr int kWorkers = 4;
  constexpr int kLines = 5000;
  std::vector<std::thread> threads;
  for (int w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      auto sink = makeSink(file, 1024);  // small threshold: many interleaved writes
      for (int i = 0; i < kLines; ++i) {
        sink->write("worker=" + std::to_string(w) + " seq=" + std::to_string(i) + " " +
                    std::string(40 + i % 50, 'p') + "\n");
      }
      sink->flush();
    });
  }
  for (auto& t : threads) t.join();
  std::istringstream in(readFile(path));
  std::string line;
  std::map<int, int> next;
  int count = 0;
  while (std::getline(in, line)) {
    int w = -1, seq = -1;
    ASSERT_EQ(sscanf(line.c_str(), "worker=%d seq=%d", &w, &seq), 2) << line;
    EXPECT_EQ(seq, next[w]++) << "lines of one worker stay in order and whole";
    EXPECT_EQ(line.size(), line.find(" p") + 1 + 40 + seq % 50);
    ++count;
  }
  EXPECT_EQ(count, kWorkers * kLines);
  ::unlink(path.c_str());
}

TEST(AccessLogSink, PipeWritesStayWithinPipeBufAtLineEnds) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  // LogFile takes ownership of a path, so go through /proc to reach the pipe's write end.
  std::string error;
  auto file = LogFile::open("/proc/self/fd/" + std::to_string(fds[1]), &error);
  ASSERT_NE(file, nullptr) << error;
  EXPECT_TRUE(file->isPipe());
  std::string expected;
  {
    FileSink sink(file, 1 << 20);
    for (int i = 0; i < 300; ++i) {
      std::string l = std::to_string(i) + std::string(30, 'z') + "\n";
      expected += l;
      sink.write(l);
    }
    std::string huge(PIPE_BUF + 100, 'H');
    huge += '\n';
    expected += huge;
    sink.write(huge);
    sink.write("tail\n");
    expected += "tail\n";
    sink.flush();
  }
  file.reset();
  ::close(fds[1]);
  std::string got;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof(buf))) > 0) got.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  EXPECT_EQ(got, expected);
}

TEST(AccessLogSink, ConcurrentWorkersOnAPipeKeepLinesWhole) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::string error;
  auto file = LogFile::open("/proc/self/fd/" + std::to_string(fds[1]), &error);
  ASSERT_NE(file, nullptr) << error;
  std::string got;
  std::thread reader([&] {
    char buf[8192];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof(buf))) > 0) got.append(buf, static_cast<size_t>(n));
  });
  constexpr int kWorkers = 4;
  constexpr int kLines = 4000;
  std::vector<std::thread> writers;
  for (int w = 0; w < kWorkers; ++w) {
    writers.emplace_back([&, w] {
      auto sink = makeSink(file, 32 * 1024);  // flushes far larger than PIPE_BUF
      for (int i = 0; i < kLines; ++i) {
        sink->write("w" + std::to_string(w) + " " + std::to_string(i) + " " + std::string(60 + i % 37, 'q') +
                    "\n");
      }
    });
  }
  for (auto& t : writers) t.join();
  file.reset();
  ::close(fds[1]);
  reader.join();
  ::close(fds[0]);
  std::istringstream in(got);
  std::string line;
  std::map<int, int> next;
  int count = 0;
  while (std::getline(in, line)) {
    int w = -1, seq = -1;
    ASSERT_EQ(sscanf(line.c_str(), "w%d %d", &w, &seq), 2) << line;
    ASSERT_EQ(seq, next[w]++);
    ASSERT_EQ(line.size(), line.find(" q") + 1 + 60 + seq % 37) << line;
    ++count;
  }
  EXPECT_EQ(count, kWorkers * kLines);
}

TEST(AccessLogSink, OpenFailureIsReported) {
  std::string error;
  EXPECT_EQ(LogFile::open("/nonexistent-dir/x.log", &error), nullptr);
  EXPECT_NE(error.find("/nonexistent-dir/x.log"), std::string::npos);
  FileSink sink(std::string("/nonexistent-dir/x.log"));
  EXPECT_FALSE(sink.ok());
  sink.write("dropped\n");
  sink.flush();
  EXPECT_EQ(sink.droppedBytes(), 8u);
  auto out = LogFile::open("/dev/stdout", &error);
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out->fd(), STDOUT_FILENO);
}

class RecordingSink : public AccessLogSink {
 public:
  explicit RecordingSink(std::vector<std::string>* lines) : lines_(lines) {}
  void write(std::string_view line) override { lines_->emplace_back(line); }
  void flush() override { ++flushes; }
  int flushes = 0;

 private:
  std::vector<std::string>* lines_;
};

http::StreamInfo stream(uint32_t code, std::chrono::milliseconds duration) {
  http::StreamInfo info;
  info.response_code = code;
  info.last_downstream_tx = duration;
  return info;
}

TEST(AccessLogFilterTest, StatusDurationFlagsAndCombinations) {
  auto ge500 = statusCodeFilter(Comparison::kGe, 500);
  EXPECT_TRUE(ge500->evaluate(stream(503, 1ms)));
  EXPECT_FALSE(ge500->evaluate(stream(200, 1ms)));
  EXPECT_TRUE(statusCodeFilter(Comparison::kEq, 404)->evaluate(stream(404, 1ms)));
  EXPECT_TRUE(statusCodeFilter(Comparison::kLe, 299)->evaluate(stream(200, 1ms)));
  EXPECT_TRUE(statusCodeFilter(Comparison::kNe, 200)->evaluate(stream(201, 1ms)));

  auto slow = durationFilter(Comparison::kGe, 100);
  EXPECT_TRUE(slow->evaluate(stream(200, 150ms)));
  EXPECT_FALSE(slow->evaluate(stream(200, 99ms)));

  std::string error;
  auto uf = responseFlagFilter({"UF", "UH"}, &error);
  ASSERT_NE(uf, nullptr) << error;
  auto s = stream(503, 1ms);
  EXPECT_FALSE(uf->evaluate(s));
  s.setFlag(http::ResponseFlag::kNoHealthyUpstream);
  EXPECT_TRUE(uf->evaluate(s));
  auto any = responseFlagFilter({}, &error);
  auto s2 = stream(200, 1ms);
  EXPECT_FALSE(any->evaluate(s2));
  s2.setFlag(http::ResponseFlag::kUnconditionalDropOverload);
  EXPECT_TRUE(any->evaluate(s2));
  EXPECT_FALSE(uf->evaluate(s2));
  EXPECT_EQ(responseFlagFilter({"XX"}, &error), nullptr);
  EXPECT_NE(error.find("'XX'"), std::string::npos);

  auto both = andFilter({ge500, slow});
  auto either = orFilter({ge500, slow});
  EXPECT_TRUE(both->evaluate(stream(503, 200ms)));
  EXPECT_FALSE(both->evaluate(stream(503, 2ms)));
  EXPECT_TRUE(either->evaluate(stream(503, 2ms)));
  EXPECT_FALSE(either->evaluate(stream(200, 2ms)));
}

TEST(AccessLogTest, LogsThroughFilterFormatterAndSink) {
  std::string error;
  std::shared_ptr<const Formatter> f = Formatter::parse("%RESPONSE_CODE% %DURATION%\n", &error);
  ASSERT_NE(f, nullptr) << error;
  std::vector<std::string> lines;
  auto sink = std::make_unique<RecordingSink>(&lines);
  RecordingSink* raw = sink.get();
  AccessLog log(f, std::move(sink), statusCodeFilter(Comparison::kGe, 400));
  log.log(stream(200, 5ms));
  log.log(stream(503, 7ms));
  log.log(stream(404, 9ms));
  log.flush();
  EXPECT_EQ(lines, (std::vector<std::string>{"503 7\n", "404 9\n"}));
  EXPECT_EQ(raw->flushes, 1);
}

TEST(AccessLogTest, DurationFallsBackToElapsedOnReset) {
  http::StreamInfo info;
  info.start = http::StreamInfo::Clock::now() - 250ms;
  EXPECT_GE(durationMs(info), 250u);
  EXPECT_LT(durationMs(info), 60000u);
}

}  // namespace
}  // namespace skiff::accesslog
