// Istio file layouts on disk: CA and workload directories, file modes, refusal to overwrite, renew, atomic
// swap.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "skiff/certs/inspect.h"
#include "skiff/certs/layout.h"
#include "skiff/certs/pem.h"
#include "test_util.h"

namespace skiff::certs {
namespace {

using testing::ScratchDir;

mode_t modeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

std::string slurp(const std::string& path) {
  Result<std::string> data = readFile(path);
  EXPECT_TRUE(data.ok()) << data.error();
  return data.ok() ? data.value() : "";
}

std::string serialOf(const std::string& chain_path) {
  Result<std::vector<X509Ptr>> certs = readCertsFile(chain_path);
  return certs.ok() ? describe(certs->front().get()).serial : "";
}

CaOptions interOptions() {
  CaOptions options;
  options.trust_domain = "";  // the parent's
  return options;
}

RenewOptions renewOptions(std::chrono::seconds before, bool force = false, std::time_t now = 0) {
  RenewOptions options;
  options.before = before;
  options.force = force;
  options.now = now;
  return options;
}

class CertsLayoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    ASSERT_TRUE(initRootCa(root_, CaOptions{}, false).ok());
    Status s = initIntermediateCa(root_, inter_, interOptions(), false);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  Result<X509Ptr> issue(const std::string& out, WorkloadOptions options = {}) {
    if (options.identity.uris.empty()) options.identity.uris = {"spiffe://cluster.local/ns/default/sa/web"};
    return issueWorkloadToDir(inter_, out, options);
  }

  ScratchDir tmp_;
  std::string root_ = tmp_ / "root";
  std::string inter_ = tmp_ / "cluster1";
};

TEST_F(CertsLayoutTest, RootCaLayout) {
  EXPECT_EQ(modeOf(root_), 0755u);
  EXPECT_EQ(modeOf(root_ + "/ca-key.pem"), 0600u);
  EXPECT_EQ(modeOf(root_ + "/ca-cert.pem"), 0644u);
  std::string ca = slurp(root_ + "/ca-cert.pem");
  EXPECT_EQ(ca, slurp(root_ + "/root-cert.pem"));
  EXPECT_EQ(ca, slurp(root_ + "/cert-chain.pem"));
  Result<CaDir> dir = loadCaDir(root_);
  ASSERT_TRUE(dir.ok()) << dir.error();
  EXPECT_TRUE(dir->intermediates().empty());
}

TEST_F(CertsLayoutTest, IntermediateCaLayout) {
  Result<CaDir> dir = loadCaDir(inter_);
  ASSERT_TRUE(dir.ok()) << dir.error();
  EXPECT_EQ(modeOf(inter_ + "/ca-key.pem"), 0600u);
  EXPECT_EQ(slurp(inter_ + "/root-cert.pem"), slurp(root_ + "/ca-cert.pem"));
  EXPECT_EQ(slurp(inter_ + "/cert-chain.pem"),
            slurp(inter_ + "/ca-cert.pem") + slurp(root_ + "/ca-cert.pem"));
  EXPECT_EQ(dir->intermediates().size(), 1u);
  EXPECT_EQ(verifyChain(dir->cert.get(), {}, {dir->roots[0].get()}), "ok");
  EXPECT_EQ(describe(dir->cert.get()).subject, "CN=Skiff Intermediate CA,O=cluster.local");
}

TEST_F(CertsLayoutTest, RefusesToOverwriteCaKeyWithoutForce) {
  std::string key_before = slurp(root_ + "/ca-key.pem");
  std::string cert_before = slurp(root_ + "/ca-cert.pem");
  Status s = initRootCa(root_, CaOptions{}, false);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(root_ + "/ca-key.pem"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("--force"), std::string::npos);
  EXPECT_EQ(slurp(root_ + "/ca-key.pem"), key_before);
  EXPECT_EQ(slurp(root_ + "/ca-cert.pem"), cert_before);
  EXPECT_FALSE(initIntermediateCa(root_, inter_, CaOptions{}, false).ok());

  // The exclusive publish itself refuses too (a racing writer that passed the early check).
  Result<Issued> other = createRootCa(CaOptions{});
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(writeCaDir(root_, other.value(), {}, {other->cert.get()}, false).ok());
  EXPECT_EQ(slurp(root_ + "/ca-key.pem"), key_before);

  ASSERT_TRUE(initRootCa(root_, CaOptions{}, true).ok());
  EXPECT_NE(slurp(root_ + "/ca-key.pem"), key_before);
  EXPECT_EQ(modeOf(root_ + "/ca-key.pem"), 0600u);
  EXPECT_TRUE(loadCaDir(root_).ok());
}

TEST_F(CertsLayoutTest, WorkloadLayout) {
  std::string out = tmp_ / "pods/web";
  Result<X509Ptr> leaf = issue(out);
  ASSERT_TRUE(leaf.ok()) << leaf.error();
  EXPECT_EQ(modeOf(tmp_ / "pods"), 0755u);
  EXPECT_EQ(modeOf(out), 0755u);
  EXPECT_EQ(modeOf(out + "/key.pem"), 0600u);
  EXPECT_EQ(slurp(out + "/root-cert.pem"), slurp(root_ + "/ca-cert.pem"));
  Result<WorkloadFiles> files = loadWorkloadDir(out);
  ASSERT_TRUE(files.ok()) << files.error();
  ASSERT_EQ(files->chain.size(), 2u);  // leaf + intermediate, not the root
  EXPECT_EQ(X509_cmp(files->chain[0].get(), leaf->get()), 0);
  EXPECT_EQ(slurp(out + "/cert-chain.pem"), certsToPem({files->chain[0].get(), files->chain[1].get()}));
  EXPECT_EQ(verifyChain(files->chain[0].get(), {files->chain[1].get()}, {files->roots[0].get()}), "ok");
  EXPECT_TRUE(std::filesystem::is_symlink(out + "/key.pem"));
  EXPECT_EQ(std::filesystem::read_symlink(out + "/key.pem").string(), "..data/key.pem");
}

TEST_F(CertsLayoutTest, WorkloadFromRootHasOnlyTheLeaf) {
  WorkloadOptions options;
  options.identity.uris = {"spiffe://cluster.local/ns/a/sa/b"};
  ASSERT_TRUE(issueWorkloadToDir(root_, tmp_ / "w", options).ok());
  Result<WorkloadFiles> files = loadWorkloadDir(tmp_ / "w");
  ASSERT_TRUE(files.ok()) << files.error();
  EXPECT_EQ(files->chain.size(), 1u);
  EXPECT_EQ(verifyChain(files->chain[0].get(), {}, {files->roots[0].get()}), "ok");
}

TEST_F(CertsLayoutTest, WorkloadErrorsNameTheFile) {
  Result<X509Ptr> r = issueWorkloadToDir(tmp_ / "nope", tmp_ / "w", WorkloadOptions{});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find(tmp_ / "nope"), std::string::npos) << r.error();
  std::filesystem::remove(inter_ + "/ca-key.pem");
  ASSERT_TRUE(writeNewFile(inter_ + "/ca-key.pem", "-----BEGIN PRIVATE KEY-----\nnot base64\n", 0600).ok());
  r = issue(tmp_ / "w");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().rfind(inter_ + "/ca-key.pem: ", 0), 0u) << r.error();
}

TEST_F(CertsLayoutTest, RenewOnlyWhenDue) {
  std::string out = tmp_ / "w";
  WorkloadOptions options;
  options.identity.uris = {"spiffe://cluster.local/ns/shop/sa/cart"};
  options.identity.dns = {"cart.shop"};
  options.validity = std::chrono::hours(10);
  ASSERT_TRUE(issue(out, options).ok());
  std::string serial = serialOf(out + "/cert-chain.pem");

  Result<RenewOutcome> r = renewWorkloadDir(inter_, out, renewOptions(std::chrono::hours(9)));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_FALSE(r->renewed);
  EXPECT_EQ(serialOf(out + "/cert-chain.pem"), serial);

  r = renewWorkloadDir(inter_, out, renewOptions(std::chrono::hours(11)));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_TRUE(r->renewed);
  std::string renewed_serial = serialOf(out + "/cert-chain.pem");
  EXPECT_NE(renewed_serial, serial);
  CertInfo info = describe(r->cert.get());
  EXPECT_EQ(info.serial, renewed_serial);
  EXPECT_EQ(info.uris, options.identity.uris);
  EXPECT_EQ(info.dns, options.identity.dns);
  EXPECT_EQ(info.not_after - info.not_before, 10 * 3600 + kClockSkew.count());

  // Due because "now" is late enough; and --force always renews.
  r = renewWorkloadDir(inter_, out, renewOptions(std::chrono::hours(1), false, info.not_after - 1800));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->renewed);
  r = renewWorkloadDir(inter_, out, renewOptions(std::chrono::seconds(0), true));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->renewed);
  Result<WorkloadFiles> files = loadWorkloadDir(out);
  ASSERT_TRUE(files.ok()) << files.error();
  EXPECT_EQ(modeOf(out + "/key.pem"), 0600u);
}

TEST_F(CertsLayoutTest, RenewKeepsRsaKeys) {
  std::string out = tmp_ / "w";
  WorkloadOptions options;
  options.key = KeySpec{KeyType::kRsa, 3072};
  ASSERT_TRUE(issue(out, options).ok());
  Result<RenewOutcome> r = renewWorkloadDir(inter_, out, renewOptions(std::chrono::hours(24), true));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(describe(r->cert.get()).key_type, "RSA 3072");
}

TEST_F(CertsLayoutTest, RenewOfMissingDirectoryNamesIt) {
  Result<RenewOutcome> r = renewWorkloadDir(inter_, tmp_ / "absent", RenewOptions{});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find(tmp_ / "absent"), std::string::npos);
}

// Readers running while renew loops always get a key that matches the chain, and old generations go away.
TEST_F(CertsLayoutTest, ReadersNeverSeeAMismatchedPairDuringRenew) {
  std::string out = tmp_ / "w";
  ASSERT_TRUE(issue(out).ok());
  std::atomic<bool> done{false};
  std::atomic<int> reads{0}, failures{0};
  std::string first_failure;
  std::thread reader([&] {
    while (!done.load()) {
      Result<WorkloadFiles> files = loadWorkloadDir(out);
      bool good = files.ok() && keyMatchesCert(files->chain.front().get(), files->key.get()) &&
                  files->chain.size() == 2;
      if (!good && failures.fetch_add(1) == 0) first_failure = files.ok() ? "mismatch" : files.error();
      reads.fetch_add(1);
    }
  });
  std::set<std::string> serials;
  for (int i = 0; i < 40; ++i) {
    Result<RenewOutcome> r = renewWorkloadDir(inter_, out, renewOptions(std::chrono::hours(24), true));
    ASSERT_TRUE(r.ok()) << r.error();
    serials.insert(describe(r->cert.get()).serial);
  }
  // Let the reader overlap the last swap too: wait (bounded) until it has read a few more times.
  int target = reads.load() + 5;
  for (int i = 0; i < 5000 && reads.load() < target; ++i) std::this_thread::yield();
  done = true;
  reader.join();
  EXPECT_EQ(serials.size(), 40u);
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(failures.load(), 0) << first_failure;
  int generations = 0;
  for (const auto& entry : std::filesystem::directory_iterator(out)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("..", 0) == 0 && name != "..data") ++generations;
  }
  EXPECT_LE(generations, 2);
}

}  // namespace
}  // namespace skiff::certs
