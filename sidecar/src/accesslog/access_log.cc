// Access-log files, per-worker buffered sinks, filters, and the AccessLog that combines them.
#include "skiff/accesslog/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

namespace skiff::accesslog {

// --- LogFile ---

LogFile::LogFile(int fd, bool owned, std::string path) : fd_(fd), owned_(owned), path_(std::move(path)) {
  struct stat st {};
  is_pipe_ = fstat(fd_, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

LogFile::~LogFile() {
  if (owned_ && fd_ >= 0) ::close(fd_);
}

std::shared_ptr<LogFile> LogFile::standardOutput() {
  return std::shared_ptr<LogFile>(new LogFile(STDOUT_FILENO, false, "/dev/stdout"));
}

std::shared_ptr<LogFile> LogFile::standardError() {
  return std::shared_ptr<LogFile>(new LogFile(STDERR_FILENO, false, "/dev/stderr"));
}

std::shared_ptr<LogFile> LogFile::open(const std::string& path, std::string* error) {
  if (path == "/dev/stdout") return standardOutput();
  if (path == "/dev/stderr") return standardError();
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (error != nullptr) *error = "cannot open access log '" + path + "': " + std::strerror(errno);
    return nullptr;
  }
  return std::shared_ptr<LogFile>(new LogFile(fd, true, path));
}

// --- FileSink ---

FileSink::FileSink(std::shared_ptr<LogFile> file, size_t flush_threshold)
    : file_(std::move(file)), flush_threshold_(flush_threshold) {
  buffer_.reserve(flush_threshold_ + 1024);
}

FileSink::FileSink(const std::string& path) : FileSink(LogFile::open(path, nullptr)) {}

FileSink::~FileSink() {
  flush();
}

void FileSink::write(std::string_view line) {
  if (file_ == nullptr) {
    dropped_bytes_ += line.size();
    return;
  }
  buffer_.append(line);
  if (buffer_.size() >= flush_threshold_) flush();
}

void FileSink::flush() {
  if (buffer_.empty()) return;
  if (file_ == nullptr) {
    dropped_bytes_ += buffer_.size();
    buffer_.clear();
    return;
  }
  std::string_view data(buffer_);
  if (!file_->isPipe()) {
    writeAll(data);
  } else {
    // Pipes keep only writes of up to PIPE_BUF whole: cut at line ends below that size.
    while (!data.empty()) {
      size_t len = data.size();
      if (len > PIPE_BUF) {
        size_t nl = data.rfind('\n', PIPE_BUF - 1);
        // A first line longer than PIPE_BUF goes out alone.
        if (nl == std::string_view::npos) nl = data.find('\n');
        len = nl == std::string_view::npos ? data.size() : nl + 1;
      }
      writeAll(data.substr(0, len));
      data.remove_prefix(len);
    }
  }
  buffer_.clear();
}

void FileSink::writeAll(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(file_->fd(), data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // Disk full, closed pipe or a non-blocking fd that is full: drop rather than stall the worker.
      dropped_bytes_ += data.size();
      return;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

std::unique_ptr<AccessLogSink> makeSink(const std::shared_ptr<LogFile>& file, size_t flush_threshold) {
  return std::make_unique<FileSink>(file, flush_threshold);
}

// --- filters ---

uint64_t durationMs(const http::StreamInfo& info) {
  auto d = info.last_downstream_tx ? *info.last_downstream_tx : info.elapsed();
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

namespace {

bool compare(Comparison op, uint64_t lhs, uint64_t rhs) {
  switch (op) {
    case Comparison::kEq:
      return lhs == rhs;
    case Comparison::kGe:
      return lhs >= rhs;
    case Comparison::kLe:
      return lhs <= rhs;
    case Comparison::kNe:
      return lhs != rhs;
  }
  return false;
}

class StatusCodeFilter : public AccessLogFilter {
 public:
  StatusCodeFilter(Comparison op, uint64_t v) : op_(op), value_(v) {}
  bool evaluate(const http::StreamInfo& info) const override {
    return compare(op_, info.response_code, value_);
  }

 private:
  Comparison op_;
  uint64_t value_;
};

class DurationFilter : public AccessLogFilter {
 public:
  DurationFilter(Comparison op, uint64_t v) : op_(op), value_(v) {}
  bool evaluate(const http::StreamInfo& info) const override {
    return compare(op_, durationMs(info), value_);
  }

 private:
  Comparison op_;
  uint64_t value_;
};

class ResponseFlagFilter : public AccessLogFilter {
 public:
  explicit ResponseFlagFilter(uint32_t mask) : mask_(mask) {}
  bool evaluate(const http::StreamInfo& info) const override { return (info.response_flags & mask_) != 0; }

 private:
  uint32_t mask_;
};

class CombinedFilter : public AccessLogFilter {
 public:
  CombinedFilter(std::vector<AccessLogFilterConstSharedPtr> filters, bool all)
      : filters_(std::move(filters)), all_(all) {}
  bool evaluate(const http::StreamInfo& info) const override {
    for (const auto& f : filters_) {
      if (f->evaluate(info) != all_) return !all_;
    }
    return all_;
  }

 private:
  std::vector<AccessLogFilterConstSharedPtr> filters_;
  bool all_;
};

}  // namespace

AccessLogFilterConstSharedPtr statusCodeFilter(Comparison op, uint64_t value) {
  return std::make_shared<StatusCodeFilter>(op, value);
}

AccessLogFilterConstSharedPtr durationFilter(Comparison op, uint64_t value_ms) {
  return std::make_shared<DurationFilter>(op, value_ms);
}

AccessLogFilterConstSharedPtr responseFlagFilter(const std::vector<std::string>& flags, std::string* error) {
  constexpr uint32_t kBits = static_cast<uint32_t>(http::ResponseFlag::kLastFlag) + 1;
  if (flags.empty())
    return std::make_shared<ResponseFlagFilter>(static_cast<uint32_t>((uint64_t{1} << kBits) - 1));
  uint32_t mask = 0;
  for (const auto& name : flags) {
    bool found = false;
    for (uint32_t bit = 0; bit < kBits && !found; ++bit) {
      if (http::responseFlagsShort(1u << bit) == name) {
        mask |= 1u << bit;
        found = true;
      }
    }
    if (!found) {
      if (error != nullptr) *error = "response_flag_filter: unknown response flag '" + name + "'";
      return nullptr;
    }
  }
  return std::make_shared<ResponseFlagFilter>(mask);
}

AccessLogFilterConstSharedPtr andFilter(std::vector<AccessLogFilterConstSharedPtr> filters) {
  return std::make_shared<CombinedFilter>(std::move(filters), true);
}

AccessLogFilterConstSharedPtr orFilter(std::vector<AccessLogFilterConstSharedPtr> filters) {
  return std::make_shared<CombinedFilter>(std::move(filters), false);
}

// --- AccessLog ---

AccessLog::AccessLog(std::shared_ptr<const Formatter> formatter, std::unique_ptr<AccessLogSink> sink,
                     AccessLogFilterConstSharedPtr filter)
    : formatter_(std::move(formatter)), sink_(std::move(sink)), filter_(std::move(filter)) {
  line_.reserve(512);
}

void AccessLog::log(const http::StreamInfo& info) {
  if (filter_ != nullptr && !filter_->evaluate(info)) return;
  line_.clear();
  formatter_->format(info, line_);
  sink_->write(line_);
}

}  // namespace skiff::accesslog
