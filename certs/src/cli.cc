// skiff-certs command line: argument parsing and the ca/workload/renew/inspect commands.
#include "skiff/certs/cli.h"

#include <sys/stat.h>

#include <climits>
#include <ctime>
#include <filesystem>
#include <map>
#include <set>

#include "skiff/certs/inspect.h"
#include "skiff/certs/issue.h"
#include "skiff/certs/layout.h"
#include "skiff/certs/pem.h"

namespace skiff::certs {
namespace {

// Parsed flags of one command: values by flag name (repeatable flags keep every value), and positionals.
struct Args {
  std::map<std::string, std::vector<std::string>> values;
  std::vector<std::string> positional;
  bool has(const std::string& flag) const { return values.count(flag) > 0; }
  std::string get(const std::string& flag, const std::string& fallback = "") const {
    auto it = values.find(flag);
    return it == values.end() ? fallback : it->second.back();
  }
  const std::vector<std::string>& all(const std::string& flag) const {
    static const std::vector<std::string> kNone;
    auto it = values.find(flag);
    return it == values.end() ? kNone : it->second;
  }
};

struct UsageError {
  std::string message;
};

// `with_value`: flags taking a value; `switches`: boolean flags. Accepts --flag value and --flag=value.
std::optional<UsageError> parseFlags(const std::vector<std::string>& in, size_t start,
                                     const std::set<std::string>& with_value,
                                     const std::set<std::string>& switches, Args& out) {
  for (size_t i = start; i < in.size(); ++i) {
    const std::string& arg = in[i];
    if (arg.rfind("--", 0) != 0 || arg == "--") {
      out.positional.push_back(arg);
      continue;
    }
    std::string name = arg, value;
    bool inline_value = false;
    if (size_t eq = arg.find('='); eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      inline_value = true;
    }
    if (switches.count(name) > 0) {
      if (inline_value) return UsageError{name + " takes no value"};
      out.values[name].push_back("");
    } else if (with_value.count(name) > 0) {
      if (!inline_value) {
        if (i + 1 >= in.size()) return UsageError{name + " needs a value"};
        value = in[++i];
      }
      out.values[name].push_back(value);
    } else {
      return UsageError{"unknown flag " + name};
    }
  }
  return std::nullopt;
}

std::optional<long> parsePositive(const std::string& text) {
  if (text.empty() || text.size() > 9) return std::nullopt;
  long v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v <= 0) return std::nullopt;
  return v;
}

// --rsa / --rsa-bits into a KeySpec.
std::optional<UsageError> keySpec(const Args& args, KeySpec& spec) {
  if (args.has("--rsa-bits") && !args.has("--rsa")) return UsageError{"--rsa-bits needs --rsa"};
  if (args.has("--rsa")) {
    spec.type = KeyType::kRsa;
    if (args.has("--rsa-bits")) {
      std::optional<long> bits = parsePositive(args.get("--rsa-bits"));
      if (!bits) return UsageError{"--rsa-bits: not a number: " + args.get("--rsa-bits")};
      spec.rsa_bits = static_cast<int>(*bits);
    }
  }
  return std::nullopt;
}

std::optional<UsageError> days(const Args& args, std::chrono::seconds& validity) {
  if (!args.has("--days")) return std::nullopt;
  std::optional<long> d = parsePositive(args.get("--days"));
  if (!d || *d > 36500)
    return UsageError{"--days: expected a whole number of days (1..36500), got " + args.get("--days")};
  validity = std::chrono::hours(24 * *d);
  return std::nullopt;
}

void printCertSummary(std::ostream& out, X509* cert) {
  CertInfo info = describe(cert);
  out << "  subject: " << (info.subject.empty() ? "(empty)" : info.subject) << "\n";
  for (const std::string& uri : info.uris) out << "  uri: " << uri << "\n";
  out << "  serial: " << info.serial << "\n";
  out << "  not_after: " << formatTime(info.not_after) << "\n";
}

int fail(std::ostream& err, const std::string& message) {
  err << "skiff-certs: " << message << "\n";
  return kExitError;
}

int usageError(std::ostream& err, const std::string& message) {
  err << "skiff-certs: " << message << "\n(run 'skiff-certs help' for usage)\n";
  return kExitUsage;
}

int caInit(const Args& args, std::ostream& out, std::ostream& err) {
  if (!args.has("--out")) return usageError(err, "ca init: --out DIR is required");
  CaOptions options;
  options.trust_domain = args.get("--trust-domain", "cluster.local");
  options.common_name = args.get("--cn");
  if (auto e = keySpec(args, options.key)) return usageError(err, "ca init: " + e->message);
  if (auto e = days(args, options.validity)) return usageError(err, "ca init: " + e->message);
  std::string dir = args.get("--out");
  if (Status s = initRootCa(dir, options, args.has("--force")); !s.ok()) return fail(err, s.message());
  Result<CaDir> ca = loadCaDir(dir);
  if (!ca.ok()) return fail(err, ca.error());
  out << "wrote root CA to " << dir << " (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem)\n";
  printCertSummary(out, ca->cert.get());
  return kExitOk;
}

int caIntermediate(const Args& args, std::ostream& out, std::ostream& err) {
  if (!args.has("--ca-dir") || !args.has("--out")) {
    return usageError(err, "ca intermediate: --ca-dir ROOTDIR and --out DIR are required");
  }
  CaOptions options;
  options.trust_domain = args.get("--trust-domain");  // empty: the parent's
  options.common_name = args.get("--cn");
  options.validity = std::chrono::hours(24 * 730);
  if (auto e = keySpec(args, options.key)) return usageError(err, "ca intermediate: " + e->message);
  if (auto e = days(args, options.validity)) return usageError(err, "ca intermediate: " + e->message);
  std::string dir = args.get("--out");
  if (Status s = initIntermediateCa(args.get("--ca-dir"), dir, options, args.has("--force")); !s.ok()) {
    return fail(err, s.message());
  }
  Result<CaDir> ca = loadCaDir(dir);
  if (!ca.ok()) return fail(err, ca.error());
  out << "wrote intermediate CA to " << dir << " (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem)\n";
  printCertSummary(out, ca->cert.get());
  return kExitOk;
}

int workload(const Args& args, std::ostream& out, std::ostream& err) {
  if (!args.has("--ca-dir") || !args.has("--out")) {
    return usageError(err, "workload: --ca-dir DIR and --out DIR are required");
  }
  bool by_spiffe = args.has("--spiffe");
  bool by_parts = args.has("--ns") || args.has("--sa");
  if (by_spiffe && by_parts) return usageError(err, "workload: give --spiffe or --ns/--sa, not both");
  if (by_parts && (!args.has("--ns") || !args.has("--sa"))) {
    return usageError(err, "workload: --ns and --sa go together");
  }
  if (!by_spiffe && !by_parts) return usageError(err, "workload: --spiffe ID or --ns NS --sa SA is required");
  if (by_spiffe && args.has("--trust-domain"))
    return usageError(err, "workload: --trust-domain goes with --ns/--sa");
  if (args.has("--days") && args.has("--hours"))
    return usageError(err, "workload: give --days or --hours, not both");

  WorkloadOptions options;
  if (auto e = keySpec(args, options.key)) return usageError(err, "workload: " + e->message);
  if (auto e = days(args, options.validity)) return usageError(err, "workload: " + e->message);
  if (args.has("--hours")) {
    std::optional<long> h = parsePositive(args.get("--hours"));
    if (!h || *h > 24 * 36500)
      return usageError(err, "workload: --hours: expected a whole number, got " + args.get("--hours"));
    options.validity = std::chrono::hours(*h);
  }
  if (args.has("--backdate")) {
    std::optional<std::chrono::seconds> d = parseDuration(args.get("--backdate"));
    if (!d) return usageError(err, "workload: --backdate: not a duration: " + args.get("--backdate"));
    options.backdate = *d;
  }
  std::string ca_dir = args.get("--ca-dir");
  std::string id = args.get("--spiffe");
  if (!by_spiffe) {
    std::string td = args.get("--trust-domain");
    if (td.empty()) {
      Result<CaDir> ca = loadCaDir(ca_dir);
      if (!ca.ok()) return fail(err, ca.error());
      td = subjectOrganization(ca->cert.get());
      if (td.empty()) td = "cluster.local";
    }
    id = spiffeId(td, args.get("--ns"), args.get("--sa"));
  }
  if (Status s = validateSpiffeId(id); !s.ok()) return usageError(err, "workload: " + s.message());
  options.identity.uris.push_back(id);
  options.identity.dns = args.all("--dns");
  for (const std::string& ip : args.all("--ip")) {
    if (!isIpAddress(ip)) return usageError(err, "workload: --ip: not an IP address: " + ip);
    options.identity.ips.push_back(ip);
  }
  std::string dir = args.get("--out");
  Result<X509Ptr> cert = issueWorkloadToDir(ca_dir, dir, options);
  if (!cert.ok()) return fail(err, cert.error());
  out << "wrote workload credentials to " << dir << " (cert-chain.pem, key.pem, root-cert.pem)\n";
  printCertSummary(out, cert->get());
  return kExitOk;
}

int renew(const Args& args, std::ostream& out, std::ostream& err) {
  if (!args.has("--ca-dir") || !args.has("--dir"))
    return usageError(err, "renew: --ca-dir DIR and --dir DIR are required");
  RenewOptions options;
  options.force = args.has("--force");
  if (args.has("--before")) {
    std::optional<std::chrono::seconds> d = parseDuration(args.get("--before"));
    if (!d) return usageError(err, "renew: --before: not a duration: " + args.get("--before"));
    options.before = *d;
  }
  std::string dir = args.get("--dir");
  Result<RenewOutcome> outcome = renewWorkloadDir(args.get("--ca-dir"), dir, options);
  if (!outcome.ok()) return fail(err, outcome.error());
  CertInfo info = describe(outcome->cert.get());
  if (!outcome->renewed) {
    out << "not due: " << dir << " expires " << formatTime(info.not_after) << " (in "
        << formatDuration(static_cast<long>(info.not_after - std::time(nullptr))) << "), renewal window "
        << formatDuration(static_cast<long>(options.before.count())) << "\n";
    return kExitOk;
  }
  out << "renewed " << dir << " (was expiring " << formatTime(outcome->old_not_after) << ")\n";
  printCertSummary(out, outcome->cert.get());
  return kExitOk;
}

int inspect(const Args& args, std::ostream& out, std::ostream& err) {
  if (args.positional.size() != 1) return usageError(err, "inspect: exactly one FILE is expected");
  std::string path = args.positional.front();
  Result<std::vector<X509Ptr>> certs = readCertsFile(path);
  if (!certs.ok()) return fail(err, certs.error());
  X509* leaf = certs->front().get();
  CertInfo info = describe(leaf);
  std::time_t now = std::time(nullptr);
  out << "file: " << path << "\n";
  out << "subject: " << (info.subject.empty() ? "(empty)" : info.subject) << "\n";
  out << "issuer: " << (info.issuer.empty() ? "(empty)" : info.issuer) << "\n";
  out << "serial: " << info.serial << "\n";
  for (const std::string& uri : info.uris) out << "uri: " << uri << "\n";
  for (const std::string& dns : info.dns) out << "dns: " << dns << "\n";
  for (const std::string& ip : info.ips) out << "ip: " << ip << "\n";
  if (!info.uris.empty() || !info.dns.empty() || !info.ips.empty()) {
    out << "san_critical: " << (info.san_critical ? "true" : "false") << "\n";
  }
  out << "not_before: " << formatTime(info.not_before) << "\n";
  out << "not_after: " << formatTime(info.not_after) << "\n";
  long left = static_cast<long>(info.not_after - now);
  if (left < 0) {
    out << "validity: expired " << formatDuration(-left) << " ago\n";
  } else if (info.not_before > now) {
    out << "validity: not yet valid (starts in " << formatDuration(static_cast<long>(info.not_before - now))
        << ")\n";
  } else {
    out << "validity: valid, expires in " << formatDuration(left) << "\n";
  }
  out << "key: " << info.key_type << "\n";
  out << "ca: " << (info.is_ca ? "true" : "false") << "\n";
  out << "chain_length: " << certs->size() << "\n";
  for (size_t i = 1; i < certs->size(); ++i) {
    CertInfo parent = describe(certs.value()[i].get());
    out << "chain[" << i << "]: " << parent.subject << " (serial " << parent.serial << ", not_after "
        << formatTime(parent.not_after) << ")\n";
  }
  std::string root_path = args.get("--root");
  if (root_path.empty()) {
    std::filesystem::path beside = std::filesystem::path(path).parent_path() / kRootCertFile;
    std::error_code ec;
    if (std::filesystem::exists(beside, ec)) root_path = beside.string();
  }
  if (root_path.empty()) {
    out << "chain: unknown (no root-cert.pem next to the file; pass --root FILE)\n";
    return kExitOk;
  }
  Result<std::vector<X509Ptr>> roots = readCertsFile(root_path);
  if (!roots.ok()) return fail(err, roots.error());
  std::vector<X509*> untrusted, trusted;
  for (size_t i = 1; i < certs->size(); ++i) untrusted.push_back(certs.value()[i].get());
  for (const X509Ptr& r : roots.value()) trusted.push_back(r.get());
  out << "root: " << root_path << "\n";
  out << "chain: " << verifyChain(leaf, untrusted, trusted) << "\n";
  return kExitOk;
}

}  // namespace

std::string usage() {
  return R"(usage: skiff-certs COMMAND [flags]

  ca init --out DIR [--trust-domain cluster.local] [--cn NAME] [--rsa [--rsa-bits 2048]] [--days 3650] [--force]
      a self-signed root CA in Istio's plug-in CA layout (ca-cert.pem ca-key.pem cert-chain.pem root-cert.pem)
  ca intermediate --ca-dir PARENT --out DIR [--trust-domain TD] [--cn NAME] [--rsa [--rsa-bits N]] [--days 730]
                  [--force]
      an intermediate CA signed by the CA in PARENT (same layout; cert-chain.pem = intermediate + parents)
  workload --ca-dir DIR --out DIR (--spiffe spiffe://TD/ns/NS/sa/SA | --ns NS --sa SA [--trust-domain TD])
           [--dns NAME]... [--ip ADDR]... [--days N | --hours N] [--backdate DURATION] [--rsa [--rsa-bits N]]
      workload credentials (cert-chain.pem key.pem root-cert.pem); EC P-256 and 1 day unless told otherwise;
      the trust domain defaults to the CA's; --backdate moves the validity window into the past (tests)
  renew --ca-dir DIR --dir WORKLOAD_DIR [--before 24h] [--force]
      re-issue the workload certificate (same SANs, key type, lifetime) when it expires within --before;
      the files are swapped atomically; prints "not due" and exits 0 otherwise
  inspect FILE [--root FILE]
      subject, issuer, serial, SANs, validity, key type, and chain status against --root or the
      root-cert.pem next to FILE

Durations: 90s, 30m, 24h, 7d, 1h30m. Exit status: 0 ok, 1 error, 2 bad usage.
)";
}

std::optional<std::chrono::seconds> parseDuration(const std::string& text) {
  if (text.empty()) return std::nullopt;
  long total = 0, number = 0;
  bool digits = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c >= '0' && c <= '9') {
      if (number > LONG_MAX / 100) return std::nullopt;
      number = number * 10 + (c - '0');
      digits = true;
      continue;
    }
    if (!digits) return std::nullopt;
    long unit = c == 's' ? 1 : c == 'm' ? 60 : c == 'h' ? 3600 : c == 'd' ? 86400 : 0;
    if (unit == 0 || number > LONG_MAX / unit / 4) return std::nullopt;
    total += number * unit;
    number = 0;
    digits = false;
  }
  if (digits) total += number;  // trailing bare number: seconds
  if (total > 100L * 365 * 86400) return std::nullopt;
  return std::chrono::seconds(total);
}

int runCli(const std::vector<std::string>& in, std::ostream& out, std::ostream& err) {
  if (in.empty()) {
    err << usage();
    return kExitUsage;
  }
  const std::string& command = in[0];
  if (command == "help" || command == "--help" || command == "-h") {
    out << usage();
    return kExitOk;
  }
  const std::set<std::string> ca_values{"--out",      "--trust-domain", "--cn",
                                        "--rsa-bits", "--days",         "--ca-dir"};
  Args args;
  std::optional<UsageError> error;
  if (command == "ca") {
    if (in.size() < 2) return usageError(err, "ca: expected 'init' or 'intermediate'");
    const std::string& sub = in[1];
    if (sub == "init") {
      error = parseFlags(in, 2, {"--out", "--trust-domain", "--cn", "--rsa-bits", "--days"},
                         {"--rsa", "--force"}, args);
      if (error) return usageError(err, "ca init: " + error->message);
      if (!args.positional.empty())
        return usageError(err, "ca init: unexpected argument " + args.positional[0]);
      return caInit(args, out, err);
    }
    if (sub == "intermediate") {
      error = parseFlags(in, 2, ca_values, {"--rsa", "--force"}, args);
      if (error) return usageError(err, "ca intermediate: " + error->message);
      if (!args.positional.empty())
        return usageError(err, "ca intermediate: unexpected argument " + args.positional[0]);
      return caIntermediate(args, out, err);
    }
    return usageError(err, "ca: unknown subcommand '" + sub + "' (expected init or intermediate)");
  }
  if (command == "workload") {
    error = parseFlags(in, 1,
                       {"--ca-dir", "--out", "--spiffe", "--ns", "--sa", "--trust-domain", "--dns", "--ip",
                        "--days", "--hours", "--backdate", "--rsa-bits"},
                       {"--rsa"}, args);
    if (error) return usageError(err, "workload: " + error->message);
    if (!args.positional.empty())
      return usageError(err, "workload: unexpected argument " + args.positional[0]);
    return workload(args, out, err);
  }
  if (command == "renew") {
    error = parseFlags(in, 1, {"--ca-dir", "--dir", "--before"}, {"--force"}, args);
    if (error) return usageError(err, "renew: " + error->message);
    if (!args.positional.empty()) return usageError(err, "renew: unexpected argument " + args.positional[0]);
    return renew(args, out, err);
  }
  if (command == "inspect") {
    error = parseFlags(in, 1, {"--root"}, {}, args);
    if (error) return usageError(err, "inspect: " + error->message);
    return inspect(args, out, err);
  }
  return usageError(err, "unknown command '" + command + "'");
}

}  // namespace skiff::certs
