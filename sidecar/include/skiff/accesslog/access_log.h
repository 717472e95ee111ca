// Access-log sinks (file, stdout, stderr), filters and the AccessLog that ties a formatter to a sink.
//
// Threading: a LogFile (the open fd) is shared by all workers; each worker owns its own sink (makeSink)
// and AccessLog, so logging a request is a format into a worker-local buffer. The buffer is written with
// one write(2) when it passes the flush threshold (16 KiB) or when the owner calls flush() (the server
// calls it from a 1 s timer per worker and at exit). Writes contain whole lines only:
//  - regular files are opened O_APPEND, so each write lands at the end as one unit and lines from
//    different workers never interleave;
//  - pipes/FIFOs (container stdout) only keep writes of at most PIPE_BUF (4096) bytes whole, so for them
//    a flush is split at line boundaries into writes of at most PIPE_BUF bytes. A single line longer than
//    PIPE_BUF is written alone and may interleave with another worker's write.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "skiff/accesslog/formatter.h"
#include "skiff/http/stream_info.h"

namespace skiff::accesslog {

// An open log destination, shared by the workers' sinks.
class LogFile {
 public:
  // Opens `path` for appending (created 0644 when missing). "/dev/stdout" and "/dev/stderr" map to fds
  // 1 and 2 directly (opening them fails when stdout is a socket). Returns nullptr and sets `*error`.
  static std::shared_ptr<LogFile> open(const std::string& path, std::string* error);
  static std::shared_ptr<LogFile> standardOutput();
  static std::shared_ptr<LogFile> standardError();

  ~LogFile();
  LogFile(const LogFile&) = delete;
  LogFile& operator=(const LogFile&) = delete;

  int fd() const { return fd_; }
  bool isPipe() const { return is_pipe_; }
  const std::string& path() const { return path_; }

 private:
  LogFile(int fd, bool owned, std::string path);
  int fd_;
  bool owned_;
  bool is_pipe_;
  std::string path_;
};

class AccessLogSink {
 public:
  virtual ~AccessLogSink() = default;
  // Takes one complete line (including its '\n'). May buffer; never blocks unless the buffer is full.
  virtual void write(std::string_view line) = 0;
  // Writes out everything buffered.
  virtual void flush() = 0;
};

// Buffers lines for one worker and writes them to a shared LogFile.
class FileSink : public AccessLogSink {
 public:
  static constexpr size_t kDefaultFlushThreshold = 16 * 1024;

  explicit FileSink(std::shared_ptr<LogFile> file, size_t flush_threshold = kDefaultFlushThreshold);
  // Convenience: opens `path` itself. Check ok(); a failed sink drops what it is given.
  explicit FileSink(const std::string& path);
  ~FileSink() override;  // flushes

  bool ok() const { return file_ != nullptr; }
  void write(std::string_view line) override;
  void flush() override;
  // Bytes lost to write errors (disk full, closed pipe).
  uint64_t droppedBytes() const { return dropped_bytes_; }

 private:
  void writeAll(std::string_view data);
  std::shared_ptr<LogFile> file_;
  size_t flush_threshold_ = kDefaultFlushThreshold;
  std::string buffer_;
  uint64_t dropped_bytes_ = 0;
};

class StdoutSink : public FileSink {
 public:
  StdoutSink() : FileSink(LogFile::standardOutput()) {}
};

class StderrSink : public FileSink {
 public:
  StderrSink() : FileSink(LogFile::standardError()) {}
};

// One sink per worker over a shared file.
std::unique_ptr<AccessLogSink> makeSink(const std::shared_ptr<LogFile>& file,
                                        size_t flush_threshold = FileSink::kDefaultFlushThreshold);

// Envoy's AccessLogFilter subset: decides whether a stream is logged. Immutable, shared by workers.
class AccessLogFilter {
 public:
  virtual ~AccessLogFilter() = default;
  virtual bool evaluate(const http::StreamInfo& info) const = 0;
};
using AccessLogFilterConstSharedPtr = std::shared_ptr<const AccessLogFilter>;

enum class Comparison { kEq, kGe, kLe, kNe };
// status_code_filter: compares RESPONSE_CODE.
AccessLogFilterConstSharedPtr statusCodeFilter(Comparison op, uint64_t value);
// duration_filter: compares DURATION in milliseconds.
AccessLogFilterConstSharedPtr durationFilter(Comparison op, uint64_t value_ms);
// response_flag_filter: short flag names ("UF", "UH"...); an empty list matches any flag. Returns nullptr
// and sets `*error` on an unknown name.
AccessLogFilterConstSharedPtr responseFlagFilter(const std::vector<std::string>& flags, std::string* error);
AccessLogFilterConstSharedPtr andFilter(std::vector<AccessLogFilterConstSharedPtr> filters);
AccessLogFilterConstSharedPtr orFilter(std::vector<AccessLogFilterConstSharedPtr> filters);

// DURATION as the formatter and duration filter see it: until the last byte out, or until now when the
// stream ended without a complete response (reset). Milliseconds.
uint64_t durationMs(const http::StreamInfo& info);

// A formatter, a sink and an optional filter. One instance per worker (it owns the worker's sink and a
// reusable line buffer); the formatter and filter are shared.
class AccessLog {
 public:
  AccessLog(std::shared_ptr<const Formatter> formatter, std::unique_ptr<AccessLogSink> sink,
            AccessLogFilterConstSharedPtr filter = nullptr);
  // Formats and writes one line unless the filter rejects the stream.
  void log(const http::StreamInfo& info);
  void flush() { sink_->flush(); }
  AccessLogSink& sink() { return *sink_; }

 private:
  std::shared_ptr<const Formatter> formatter_;
  std::unique_ptr<AccessLogSink> sink_;
  AccessLogFilterConstSharedPtr filter_;
  std::string line_;
};

}  // namespace skiff::accesslog
