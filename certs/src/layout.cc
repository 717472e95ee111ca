// Istio file layouts: CA directories, workload credential directories (atomic ..data swap) and renewal.
#include "skiff/certs/layout.h"

#include <dirent.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "skiff/certs/inspect.h"
#include "skiff/certs/pem.h"

namespace skiff::certs {
namespace {

namespace fs = std::filesystem;

constexpr int kReadAttempts = 50;

std::string join(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

std::vector<X509*> raw(const std::vector<X509Ptr>& certs) {
  std::vector<X509*> out;
  for (const X509Ptr& c : certs) out.push_back(c.get());
  return out;
}

std::string randomHex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  RAND_bytes(buf.data(), static_cast<int>(buf.size()));
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : buf) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::string readLink(const std::string& path) {
  char buf[PATH_MAX];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

// Points `link` at `target` atomically: a fresh symlink under a temporary name renamed over `link`.
Status swapSymlink(const std::string& dir, const std::string& link, const std::string& target) {
  std::string tmp = join(dir, link + ".tmp." + randomHex(4));
  if (::symlink(target.c_str(), tmp.c_str()) != 0) {
    return Status::error(tmp + ": cannot create symlink: " + std::strerror(errno));
  }
  std::string path = join(dir, link);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    return Status::error(path + ": cannot replace: " + reason);
  }
  return {};
}

// Publishes `data` as `path` only if nothing exists there: write a temporary file, then link(2), which fails
// with EEXIST instead of replacing.
Status publishExclusive(const std::string& path, const std::string& data, mode_t mode) {
  std::string tmp = path + ".tmp." + randomHex(4);
  if (Status s = writeNewFile(tmp, data, mode); !s.ok()) return s;
  int rc = ::link(tmp.c_str(), path.c_str());
  int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0 && err == EEXIST) {
    return Status::error(path +
                         ": a CA key already exists; refusing to overwrite it (pass --force to replace it)");
  }
  if (rc != 0) return Status::error(path + ": cannot create: " + std::strerror(err));
  return {};
}

// Removes versioned directories other than `keep_a` and `keep_b` (the new and the previous generation, so a
// reader that resolved ..data just before the swap can finish).
void collectOldGenerations(const std::string& dir, const std::string& keep_a, const std::string& keep_b) {
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("..", 0) != 0 || name == kDataLink || name == keep_a || name == keep_b) continue;
    if (name.find(".tmp.") != std::string::npos) continue;  // another writer's link in flight
    std::error_code ignored;
    if (entry.is_directory(ignored) && !entry.is_symlink(ignored)) fs::remove_all(entry.path(), ignored);
  }
}

Status checkDirUsable(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return Status::error(dir + ": " + std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) return Status::error(dir + ": not a directory");
  return {};
}

}  // namespace

std::vector<X509*> CaDir::intermediates() const {
  std::vector<X509*> out;
  for (const X509Ptr& c : chain) {
    if (X509_self_signed(c.get(), 0) != 1) out.push_back(c.get());
  }
  return out;
}

Result<CaDir> loadCaDir(const std::string& dir) {
  if (Status s = checkDirUsable(dir); !s.ok()) return s;
  CaDir ca;
  Result<std::vector<X509Ptr>> cert = readCertsFile(join(dir, kCaCertFile));
  if (!cert.ok()) return cert.status();
  ca.cert = std::move(cert->front());
  Result<EvpPkeyPtr> key = readKeyFile(join(dir, kCaKeyFile));
  if (!key.ok()) return key.status();
  ca.key = std::move(key.value());
  if (!keyMatchesCert(ca.cert.get(), ca.key.get())) {
    return Status::error(join(dir, kCaKeyFile) + ": does not match " + join(dir, kCaCertFile));
  }
  if (X509_check_ca(ca.cert.get()) < 1)
    return Status::error(join(dir, kCaCertFile) + ": not a CA certificate");
  Result<std::vector<X509Ptr>> roots = readCertsFile(join(dir, kRootCertFile));
  if (!roots.ok()) return roots.status();
  ca.roots = std::move(roots.value());
  std::string chain_path = join(dir, kCertChainFile);
  if (exists(chain_path)) {
    Result<std::vector<X509Ptr>> chain = readCertsFile(chain_path);
    if (!chain.ok()) return chain.status();
    ca.chain = std::move(chain.value());
    if (X509_cmp(ca.chain.front().get(), ca.cert.get()) != 0) {
      return Status::error(chain_path + ": does not start with " + kCaCertFile);
    }
  } else {
    ca.chain.push_back(shareCert(ca.cert.get()));
  }
  return ca;
}

Status writeCaDir(const std::string& dir, const Issued& ca, const std::vector<X509*>& parents,
                  const std::vector<X509*>& roots, bool force) {
  if (Status s = makeDirs(dir); !s.ok()) return s;
  std::string key_path = join(dir, kCaKeyFile);
  std::string key_pem = keyToPem(ca.key.get());
  if (key_pem.empty()) return Status::error(key_path + ": cannot encode the private key");
  // The key goes first: if it is refused, nothing else in the directory changes.
  Status key_written =
      force ? replaceFile(key_path, key_pem, 0600) : publishExclusive(key_path, key_pem, 0600);
  if (!key_written.ok()) return key_written;
  std::vector<X509*> chain{ca.cert.get()};
  chain.insert(chain.end(), parents.begin(), parents.end());
  if (Status s = replaceFile(join(dir, kCaCertFile), certToPem(ca.cert.get()), 0644); !s.ok()) return s;
  if (Status s = replaceFile(join(dir, kCertChainFile), certsToPem(chain), 0644); !s.ok()) return s;
  if (Status s = replaceFile(join(dir, kRootCertFile), certsToPem(roots), 0644); !s.ok()) return s;
  return fsyncDir(dir);
}

Status initRootCa(const std::string& out_dir, const CaOptions& options, bool force) {
  if (!force && exists(join(out_dir, kCaKeyFile))) {
    return Status::error(join(out_dir, kCaKeyFile) +
                         ": a CA key already exists; refusing to overwrite it (pass --force to replace it)");
  }
  Result<Issued> root = createRootCa(options);
  if (!root.ok()) return root.status();
  return writeCaDir(out_dir, root.value(), {}, {root->cert.get()}, force);
}

Status initIntermediateCa(const std::string& parent_dir, const std::string& out_dir, CaOptions options,
                          bool force) {
  if (!force && exists(join(out_dir, kCaKeyFile))) {
    return Status::error(join(out_dir, kCaKeyFile) +
                         ": a CA key already exists; refusing to overwrite it (pass --force to replace it)");
  }
  Result<CaDir> parent = loadCaDir(parent_dir);
  if (!parent.ok()) return parent.status();
  if (options.trust_domain.empty()) options.trust_domain = subjectOrganization(parent->cert.get());
  Result<Issued> ca = createIntermediateCa(options, parent->cert.get(), parent->key.get());
  if (!ca.ok()) return Status::error(parent_dir + ": " + ca.error());
  return writeCaDir(out_dir, ca.value(), raw(parent->chain), raw(parent->roots), force);
}

Status writeWorkloadDir(const std::string& dir, const Issued& leaf, const std::vector<X509*>& intermediates,
                        const std::vector<X509*>& roots) {
  if (Status s = makeDirs(dir); !s.ok()) return s;
  // 1. A new generation directory holding all three files, each fsynced.
  std::string generation;
  for (int attempt = 0; generation.empty(); ++attempt) {
    std::time_t now = std::time(nullptr);
    struct tm tm {};
    gmtime_r(&now, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof(stamp), "..%Y_%m_%d_%H_%M_%S.", &tm);
    std::string name = stamp + randomHex(4);
    if (::mkdir(join(dir, name).c_str(), 0755) == 0) {
      generation = name;
    } else if (errno != EEXIST || attempt > 10) {
      return Status::error(join(dir, name) + ": cannot create directory: " + std::strerror(errno));
    }
  }
  std::string gen_path = join(dir, generation);
  std::vector<X509*> chain{leaf.cert.get()};
  chain.insert(chain.end(), intermediates.begin(), intermediates.end());
  auto fail = [&](Status s) {
    std::error_code ignored;
    fs::remove_all(gen_path, ignored);
    return s;
  };
  std::string key_pem = keyToPem(leaf.key.get());
  if (key_pem.empty())
    return fail(Status::error(join(gen_path, kKeyFile) + ": cannot encode the private key"));
  if (Status s = writeNewFile(join(gen_path, kKeyFile), key_pem, 0600); !s.ok()) return fail(s);
  if (Status s = writeNewFile(join(gen_path, kCertChainFile), certsToPem(chain), 0644); !s.ok())
    return fail(s);
  if (Status s = writeNewFile(join(gen_path, kRootCertFile), certsToPem(roots), 0644); !s.ok())
    return fail(s);
  if (Status s = fsyncDir(gen_path); !s.ok()) return fail(s);

  // 2. The one atomic step: ..data now names the new generation, so key and chain change together.
  std::string previous = readLink(join(dir, kDataLink));
  if (Status s = swapSymlink(dir, kDataLink, generation); !s.ok()) return fail(s);

  // 3. The stable names point through ..data (only changes the first time, or over plain files).
  for (const char* name : {kKeyFile, kCertChainFile, kRootCertFile}) {
    std::string target = std::string(kDataLink) + "/" + name;
    if (readLink(join(dir, name)) == target) continue;
    if (Status s = swapSymlink(dir, name, target); !s.ok()) return s;
  }
  if (Status s = fsyncDir(dir); !s.ok()) return s;
  collectOldGenerations(dir, generation, previous);
  return {};
}

Result<WorkloadFiles> loadWorkloadDir(const std::string& dir) {
  if (Status s = checkDirUsable(dir); !s.ok()) return s;
  Status last;
  for (int attempt = 0; attempt < kReadAttempts; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(attempt < 5 ? 0 : 2));
    std::string generation = readLink(join(dir, kDataLink));
    // Reading inside one generation directory gives a consistent set; plain files may be mid-update.
    std::string base = generation.empty() ? dir : join(dir, generation);
    WorkloadFiles files;
    Result<EvpPkeyPtr> key = readKeyFile(join(base, kKeyFile));
    Result<std::vector<X509Ptr>> chain = readCertsFile(join(base, kCertChainFile));
    Result<std::vector<X509Ptr>> roots = readCertsFile(join(base, kRootCertFile));
    bool changed = !generation.empty() && readLink(join(dir, kDataLink)) != generation;
    if (!key.ok() || !chain.ok() || !roots.ok()) {
      last = !key.ok() ? key.status() : !chain.ok() ? chain.status() : roots.status();
      if (changed) continue;  // the generation we read was collected under us
      return last;
    }
    if (!keyMatchesCert(chain->front().get(), key->get())) {
      last = Status::error(join(dir, kKeyFile) + ": does not match " + join(dir, kCertChainFile));
      continue;
    }
    files.key = std::move(key.value());
    files.chain = std::move(chain.value());
    files.roots = std::move(roots.value());
    return files;
  }
  return last;
}

Result<X509Ptr> issueWorkloadToDir(const std::string& ca_dir, const std::string& out_dir,
                                   const WorkloadOptions& options) {
  Result<CaDir> ca = loadCaDir(ca_dir);
  if (!ca.ok()) return ca.status();
  Result<Issued> leaf = issueWorkload(options, ca->cert.get(), ca->key.get());
  if (!leaf.ok()) return leaf.status();
  if (Status s = writeWorkloadDir(out_dir, leaf.value(), ca->intermediates(), raw(ca->roots)); !s.ok())
    return s;
  return std::move(leaf->cert);
}

Result<RenewOutcome> renewWorkloadDir(const std::string& ca_dir, const std::string& dir,
                                      const RenewOptions& options) {
  Result<WorkloadFiles> current = loadWorkloadDir(dir);
  if (!current.ok()) return current.status();
  X509* leaf = current->chain.front().get();
  CertInfo info = describe(leaf);
  std::time_t now = options.now != 0 ? options.now : std::time(nullptr);
  RenewOutcome outcome;
  outcome.old_not_after = info.not_after;
  if (!options.force && info.not_after - now > options.before.count()) {
    outcome.cert = std::move(current->chain.front());
    return outcome;
  }
  WorkloadOptions workload;
  workload.identity.uris = info.uris;
  workload.identity.dns = info.dns;
  workload.identity.ips = info.ips;
  EVP_PKEY* old_key = current->key.get();
  if (EVP_PKEY_is_a(old_key, "RSA")) workload.key = KeySpec{KeyType::kRsa, EVP_PKEY_get_bits(old_key)};
  // Same lifetime as before: the issued window was validity + the clock-skew allowance.
  long lifetime = static_cast<long>(info.not_after - info.not_before) - kClockSkew.count();
  workload.validity = std::chrono::seconds(std::max(lifetime, 60L));
  Result<X509Ptr> cert = issueWorkloadToDir(ca_dir, dir, workload);
  if (!cert.ok()) return cert.status();
  outcome.renewed = true;
  outcome.cert = std::move(cert.value());
  return outcome;
}

}  // namespace skiff::certs
