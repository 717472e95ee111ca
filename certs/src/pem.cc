// PEM parsing/encoding of certificates and keys, and crash-safe file writes (O_EXCL, fsync, rename).
#include "skiff/certs/pem.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace skiff::certs {
namespace {

constexpr size_t kMaxFileBytes = 4 << 20;  // PEM files are small; refuse to slurp anything huge.

std::string errnoText() {
  return std::strerror(errno);
}

// Never prompt on the terminal for a passphrase: an encrypted key is an error.
int noPassphrase(char*, int, int, void*) {
  return -1;
}

std::string bioToString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, len > 0 ? static_cast<size_t>(len) : 0);
}

std::string dirOf(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

}  // namespace

std::string lastOpenSslError() {
  unsigned long code = ERR_peek_last_error();
  std::string text;
  if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    const char* reason = ERR_reason_error_string(code);
    text = reason != nullptr ? reason : buf;
  } else {
    text = "unknown OpenSSL error";
  }
  ERR_clear_error();
  return text;
}

Result<std::vector<X509Ptr>> parseCerts(const std::string& pem, const std::string& name) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return Status::error(name + ": out of memory");
  ERR_clear_error();
  std::vector<X509Ptr> certs;
  for (int block = 1;; ++block) {
    char* type = nullptr;
    char* header = nullptr;
    unsigned char* der = nullptr;
    long len = 0;
    if (PEM_read_bio(bio.get(), &type, &header, &der, &len) != 1) {
      unsigned long err = ERR_peek_last_error();
      if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
        ERR_clear_error();  // no further PEM block: the normal end
        break;
      }
      return Status::error(name + ": malformed PEM block " + std::to_string(block) + ": " +
                           lastOpenSslError());
    }
    std::string block_type = type;
    OPENSSL_free(type);
    OPENSSL_free(header);
    if (block_type == "CERTIFICATE") {
      const unsigned char* p = der;
      X509Ptr cert(d2i_X509(nullptr, &p, len));
      bool complete = cert && p == der + len;
      OPENSSL_free(der);
      if (!complete) {
        return Status::error(name + ": PEM block " + std::to_string(block) +
                             " is not a valid X.509 certificate: " + lastOpenSslError());
      }
      certs.push_back(std::move(cert));
    } else {
      OPENSSL_free(der);  // keys and other blocks are skipped
    }
  }
  if (certs.empty()) return Status::error(name + ": no PEM certificate found");
  return certs;
}

Result<std::vector<X509Ptr>> readCertsFile(const std::string& path) {
  Result<std::string> data = readFile(path);
  if (!data.ok()) return data.status();
  return parseCerts(data.value(), path);
}

Result<EvpPkeyPtr> parseKey(const std::string& pem, const std::string& name) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return Status::error(name + ": out of memory");
  ERR_clear_error();
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, noPassphrase, nullptr));
  if (!key) {
    unsigned long err = ERR_peek_last_error();
    if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
      ERR_clear_error();
      return Status::error(name + ": no PEM private key found");
    }
    return Status::error(name + ": invalid private key: " + lastOpenSslError());
  }
  return key;
}

Result<EvpPkeyPtr> readKeyFile(const std::string& path) {
  Result<std::string> data = readFile(path);
  if (!data.ok()) return data.status();
  return parseKey(data.value(), path);
}

std::string certToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return "";
  return bioToString(bio.get());
}

std::string certsToPem(const std::vector<X509*>& certs) {
  std::string out;
  for (X509* cert : certs) out += certToPem(cert);
  return out;
}

std::string keyToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) return "";
  return bioToString(bio.get());
}

bool keyMatchesCert(X509* cert, EVP_PKEY* key) {
  bool match = X509_check_private_key(cert, key) == 1;
  ERR_clear_error();
  return match;
}

Result<std::string> readFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::error(path + ": cannot open: " + errnoText());
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::error(path + ": not a regular file");
  }
  std::string data;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::string reason = errnoText();
      ::close(fd);
      return Status::error(path + ": read failed: " + reason);
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxFileBytes) {
      ::close(fd);
      return Status::error(path + ": larger than " + std::to_string(kMaxFileBytes) + " bytes");
    }
  }
  ::close(fd);
  return data;
}

Status writeNewFile(const std::string& path, const std::string& data, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return Status::error(path + ": cannot create: " + errnoText());
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::string reason = errnoText();
      ::close(fd);
      ::unlink(path.c_str());
      return Status::error(path + ": write failed: " + reason);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::string reason = errnoText();
    ::unlink(path.c_str());
    return Status::error(path + ": fsync/close failed: " + reason);
  }
  return {};
}

Status replaceFile(const std::string& path, const std::string& data, mode_t mode) {
  std::filesystem::path p(path);
  unsigned char rnd[6];
  RAND_bytes(rnd, sizeof(rnd));
  char suffix[32];
  std::snprintf(suffix, sizeof(suffix), ".%d.%02x%02x%02x%02x%02x%02x", static_cast<int>(::getpid()), rnd[0],
                rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
  std::string tmp = (p.parent_path() / ("." + p.filename().string() + ".tmp" + suffix)).string();
  if (Status s = writeNewFile(tmp, data, mode); !s.ok()) return s;
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string reason = errnoText();
    ::unlink(tmp.c_str());
    return Status::error(path + ": rename from " + tmp + " failed: " + reason);
  }
  return fsyncDir(dirOf(path));
}

Status makeDirs(const std::string& path) {
  if (path.empty()) return Status::error("empty directory path");
  std::string prefix;
  std::filesystem::path p(path);
  for (const auto& part : p) {
    prefix = prefix.empty() ? part.string() : (std::filesystem::path(prefix) / part).string();
    if (part == "/" || part.empty()) continue;
    if (::mkdir(prefix.c_str(), 0755) == 0) continue;
    if (errno != EEXIST) return Status::error(prefix + ": cannot create directory: " + errnoText());
    struct stat st {};
    if (::stat(prefix.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return Status::error(prefix + ": exists and is not a directory");
    }
  }
  return {};
}

Status fsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::error(dir + ": cannot open directory: " + errnoText());
  int rc = ::fsync(fd);
  std::string reason = rc != 0 ? errnoText() : "";
  ::close(fd);
  if (rc != 0) return Status::error(dir + ": fsync failed: " + reason);
  return {};
}

}  // namespace skiff::certs
