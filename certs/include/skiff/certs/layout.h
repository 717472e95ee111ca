#pragma once
// Istio's on-disk layouts (plug-in CA directory, workload credentials) and the operations on them.
//
// CA directory (Istio's "plug-in CA" files, what istiod reads from the cacerts secret):
//   ca-cert.pem     the signing CA's certificate
//   ca-key.pem      its private key (0600)
//   cert-chain.pem  ca-cert followed by its parents up to and including the root
//   root-cert.pem   the root(s) of trust
// For a root CA ca-cert.pem == root-cert.pem == cert-chain.pem.
//
// Workload directory (what Istio's agent writes with OUTPUT_CERTS and what a file-based SDS config points
// at):
//   cert-chain.pem  the leaf followed by intermediates (never the root)
//   key.pem         the leaf's private key (0600)
//   root-cert.pem   the root(s) of trust
// These three names are symlinks into a versioned directory, swapped as one through a `..data` symlink (the
// Kubernetes Secret-volume scheme, which Envoy's SDS `watched_directory` is built for), so key and chain
// change together. See certs/README.md for why two plain renames cannot give that guarantee.
#include <chrono>
#include <ctime>
#include <string>
#include <vector>

#include "skiff/certs/issue.h"
#include "skiff/certs/openssl_ptr.h"
#include "skiff/certs/result.h"

namespace skiff::certs {

inline constexpr char kCaCertFile[] = "ca-cert.pem";
inline constexpr char kCaKeyFile[] = "ca-key.pem";
inline constexpr char kCertChainFile[] = "cert-chain.pem";
inline constexpr char kRootCertFile[] = "root-cert.pem";
inline constexpr char kKeyFile[] = "key.pem";
inline constexpr char kDataLink[] = "..data";

struct CaDir {
  X509Ptr cert;                              // ca-cert.pem
  EvpPkeyPtr key;                            // ca-key.pem
  std::vector<X509Ptr> chain;                // cert-chain.pem (ca-cert first)
  std::vector<X509Ptr> roots;                // root-cert.pem
  std::vector<X509*> intermediates() const;  // the chain without self-signed certificates
};

// Loads and cross-checks a CA directory (key matches cert, chain starts with ca-cert).
Result<CaDir> loadCaDir(const std::string& dir);

// Writes a CA directory. `parents` are the issuer's chain above `ca` (empty for a root). An existing
// ca-key.pem is an error unless `force`; the key is published with link(2) so even two racing writers cannot
// clobber it.
Status writeCaDir(const std::string& dir, const Issued& ca, const std::vector<X509*>& parents,
                  const std::vector<X509*>& roots, bool force);

// `ca init`: a new self-signed root CA in `out_dir`.
Status initRootCa(const std::string& out_dir, const CaOptions& options, bool force);
// `ca intermediate`: a CA signed by the CA in `parent_dir`. An empty trust domain takes the parent's O.
Status initIntermediateCa(const std::string& parent_dir, const std::string& out_dir, CaOptions options,
                          bool force);

struct WorkloadFiles {
  std::vector<X509Ptr> chain;  // leaf first
  EvpPkeyPtr key;
  std::vector<X509Ptr> roots;
};

// Atomically publishes new workload credentials in `dir` (created 0755 if missing).
Status writeWorkloadDir(const std::string& dir, const Issued& leaf, const std::vector<X509*>& intermediates,
                        const std::vector<X509*>& roots);
// Reads a consistent key/chain/root set: one `..data` generation, or (for plain files written by other tools)
// retries until key.pem matches cert-chain.pem.
Result<WorkloadFiles> loadWorkloadDir(const std::string& dir);

// `workload`: issues from the CA in `ca_dir` into `out_dir`; returns the new leaf.
Result<X509Ptr> issueWorkloadToDir(const std::string& ca_dir, const std::string& out_dir,
                                   const WorkloadOptions& options);

struct RenewOptions {
  std::chrono::seconds before{std::chrono::hours(24)};  // renew when notAfter is closer than this
  bool force = false;
  std::time_t now = 0;  // 0: the current time
};

struct RenewOutcome {
  bool renewed = false;
  std::time_t old_not_after = 0;
  X509Ptr cert;  // the new leaf when renewed, else the current one
};

// `renew`: re-issues the workload in `dir` with the same SANs, key type and validity length when due.
Result<RenewOutcome> renewWorkloadDir(const std::string& ca_dir, const std::string& dir,
                                      const RenewOptions& options);

}  // namespace skiff::certs
