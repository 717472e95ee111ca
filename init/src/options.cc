// Parsing of istio-iptables-compatible flags into Options; validates lists before anything is touched.
#include "skiff/init/options.h"

#include <charconv>
#include <functional>
#include <optional>
#include <sstream>

namespace skiff::init {
namespace {

std::vector<std::string> splitList(const std::string& value) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(value);
  while (std::getline(in, item, ',')) {
    size_t b = item.find_first_not_of(" \t");
    size_t e = item.find_last_not_of(" \t");
    if (b != std::string::npos) out.push_back(item.substr(b, e - b + 1));
  }
  return out;
}

bool parseUint(const std::string& s, uint64_t max, uint64_t* out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v > max) return false;
  *out = v;
  return true;
}

bool parsePort(const std::string& s, uint16_t* out) {
  uint64_t v;
  if (!parseUint(s, 65535, &v) || v == 0) return false;
  *out = static_cast<uint16_t>(v);
  return true;
}

// A Go-style duration as istio-iptables takes it: "5s", "500ms", "1m"; a bare number is seconds.
std::optional<uint32_t> parseDurationMs(const std::string& v) {
  static const std::pair<const char*, uint64_t> kUnits[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}};
  std::string digits = v;
  uint64_t scale = 1000;
  for (const auto& [suffix, factor] : kUnits) {
    size_t n = std::char_traits<char>::length(suffix);
    if (v.size() > n && v.compare(v.size() - n, n, suffix) == 0) {
      digits = v.substr(0, v.size() - n);
      scale = factor;
      break;
    }
  }
  uint64_t n;
  if (!parseUint(digits, 3600000, &n) || n == 0 || n * scale > 3600000) return std::nullopt;
  return static_cast<uint32_t>(n * scale);
}

// A flag handler returns an error message (without the flag name) or "" on success.
using Handler = std::function<std::string(Options&, const std::string&)>;

struct Flag {
  const char* shortName;  // without '-', may be empty
  const char* longName;   // without '--'
  bool takesValue;
  Handler handle;
};

Handler portFlag(uint16_t Options::*field) {
  return [field](Options& o, const std::string& v) -> std::string {
    if (!parsePort(v, &(o.*field))) return "invalid port '" + v + "'";
    return "";
  };
}

Handler portListFlag(std::vector<uint16_t> Options::*field) {
  return [field](Options& o, const std::string& v) -> std::string {
    (o.*field).clear();
    for (const auto& item : splitList(v)) {
      uint16_t port;
      if (!parsePort(item, &port)) return "invalid port '" + item + "' in '" + v + "'";
      (o.*field).push_back(port);
    }
    return "";
  };
}

Handler uintFlag(uint32_t Options::*field, uint64_t max) {
  return [field, max](Options& o, const std::string& v) -> std::string {
    uint64_t n;
    if (!parseUint(v, max, &n) || n == 0) return "invalid number '" + v + "'";
    o.*field = static_cast<uint32_t>(n);
    return "";
  };
}

Handler idListFlag(std::vector<uint32_t> Options::*field) {
  return [field](Options& o, const std::string& v) -> std::string {
    (o.*field).clear();
    for (const auto& item : splitList(v)) {
      uint64_t id;
      if (!parseUint(item, 0xfffffffe, &id)) return "invalid id '" + item + "' in '" + v + "'";
      (o.*field).push_back(static_cast<uint32_t>(id));
    }
    return "";
  };
}

std::string parseCidrList(const std::string& v, bool* all, std::vector<Cidr>* out) {
  out->clear();
  if (all) *all = false;
  for (const auto& item : splitList(v)) {
    if (item == "*" && all) {
      *all = true;
      continue;
    }
    auto cidr = parseCidr(item);
    if (!cidr) return "invalid CIDR '" + item + "' in '" + v + "'";
    out->push_back(*cidr);
  }
  return "";
}

Handler boolFlag(bool Options::*field) {
  return [field](Options& o, const std::string&) -> std::string {
    o.*field = true;
    return "";
  };
}

const std::vector<Flag>& flags() {
  static const std::vector<Flag> table{
      {"p", "envoy-port", true, portFlag(&Options::outboundPort)},
      {"z", "inbound-capture-port", true, portFlag(&Options::inboundPort)},
      {"e", "inbound-tunnel-port", true, portFlag(&Options::tunnelPort)},
      {"u", "proxy-uid", true, idListFlag(&Options::proxyUids)},
      {"t", "istio-inbound-tproxy-mark", true, uintFlag(&Options::tproxyMark, 0xffffffff)},
      {"r", "istio-inbound-tproxy-route-table", true, uintFlag(&Options::routeTable, 0xffffffff)},
      {"g", "proxy-gid", true, idListFlag(&Options::proxyGids)},
      {"m", "istio-inbound-interception-mode", true,
       [](Options& o, const std::string& v) -> std::string {
         if (v.empty() || v == "REDIRECT") {
           o.mode = InterceptionMode::kRedirect;
         } else if (v == "TPROXY") {
           o.mode = InterceptionMode::kTproxy;
         } else {
           return "invalid mode '" + v + "' (want REDIRECT or TPROXY)";
         }
         return "";
       }},
      {"b", "istio-inbound-ports", true,
       [](Options& o, const std::string& v) -> std::string {
         o.inboundAll = v == "*";
         o.inboundPorts.clear();
         if (o.inboundAll) return "";
         return portListFlag(&Options::inboundPorts)(o, v);
       }},
      {"d", "istio-local-exclude-ports", true, portListFlag(&Options::inboundExcludePorts)},
      {"i", "istio-service-cidr", true,
       [](Options& o, const std::string& v) { return parseCidrList(v, &o.outboundAll, &o.outboundInclude); }},
      {"x", "istio-service-exclude-cidr", true,
       [](Options& o, const std::string& v) { return parseCidrList(v, nullptr, &o.outboundExclude); }},
      {"o", "istio-local-outbound-ports-exclude", true, portListFlag(&Options::outboundExcludePorts)},
      {"q", "istio-outbound-ports", true, portListFlag(&Options::outboundIncludePorts)},
      {"k", "kube-virt-interfaces", true,
       [](Options& o, const std::string& v) {
         o.virtualInterfaces = splitList(v);
         return std::string();
       }},
      {"c", "istio-exclude-interfaces", true,
       [](Options& o, const std::string& v) {
         o.excludeInterfaces = splitList(v);
         return std::string();
       }},
      {"", "redirect-dns", false, boolFlag(&Options::redirectDns)},
      {"", "capture-all-dns", false, boolFlag(&Options::captureAllDns)},
      {"n", "dry-run", false, boolFlag(&Options::dryRun)},
      {"", "cleanup", false, boolFlag(&Options::cleanup)},
      {"", "cleanup-only", false, boolFlag(&Options::cleanup)},
      {"", "check", false, boolFlag(&Options::check)},
      {"", "run-validation", false, boolFlag(&Options::runValidation)},
      {"", "skip-rule-apply", false, boolFlag(&Options::skipRuleApply)},
      {"", "iptables-probe-port", true, portFlag(&Options::probePort)},
      {"", "probe-timeout", true,
       [](Options& o, const std::string& v) -> std::string {
         auto ms = parseDurationMs(v);
         if (!ms) return "invalid duration '" + v + "' (want e.g. 5s, 500ms, 1m)";
         o.probeTimeoutMs = *ms;
         return "";
       }},
      {"h", "help", false, boolFlag(&Options::help)},
  };
  return table;
}

const Flag* findFlag(const std::string& name, bool isLong) {
  for (const auto& f : flags()) {
    if (isLong ? name == f.longName : (*f.shortName && name == f.shortName)) return &f;
  }
  return nullptr;
}

bool validInterfaceName(const std::string& name) {
  return !name.empty() && name.size() < 16;
}

}  // namespace

ParseResult parseOptions(const std::vector<std::string>& args) {
  ParseResult result;
  Options& o = result.options;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    std::string name, value, shown = arg;
    bool hasValue = false;
    bool isLong = arg.rfind("--", 0) == 0;
    if (isLong) {
      name = arg.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        hasValue = true;
      }
      shown = "--" + name;
    } else if (arg.size() >= 2 && arg[0] == '-') {
      name = arg.substr(1, 1);
      if (arg.size() > 2) {
        value = arg.substr(arg[2] == '=' ? 3 : 2);
        hasValue = true;
      }
      shown = "-" + name;
    } else {
      result.error = "unexpected argument '" + arg + "'";
      return result;
    }
    const Flag* flag = findFlag(name, isLong);
    if (!flag) {
      result.error = "unknown flag '" + shown + "'";
      return result;
    }
    if (flag->takesValue && !hasValue) {
      if (i + 1 >= args.size()) {
        result.error = shown + ": missing value";
        return result;
      }
      value = args[++i];
    } else if (!flag->takesValue && hasValue) {
      result.error = shown + ": takes no value";
      return result;
    }
    if (std::string err = flag->handle(o, value); !err.empty()) {
      result.error = shown + ": " + err;
      return result;
    }
  }
  for (const auto* list : {&o.virtualInterfaces, &o.excludeInterfaces}) {
    for (const auto& name : *list) {
      if (!validInterfaceName(name)) {
        result.error = std::string(list == &o.virtualInterfaces ? "-k" : "-c") +
                       ": invalid interface name '" + name + "'";
        return result;
      }
    }
  }
  if (o.proxyUids.empty() && o.proxyGids.empty()) {
    result.error = "-u: at least one proxy uid or gid is required";
    return result;
  }
  if (o.proxyGids.empty()) o.proxyGids = o.proxyUids;
  if (o.cleanup + o.check + o.dryRun > 1) {
    result.error = "--cleanup, --check and --dry-run are exclusive";
    return result;
  }
  result.ok = true;
  return result;
}

std::vector<Cidr> parseResolvConf(const std::string& text) {
  std::vector<Cidr> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string key, addr;
    if (!(words >> key >> addr) || key != "nameserver") continue;
    if (auto pct = addr.find('%'); pct != std::string::npos) addr.resize(pct);  // drop a zone id
    if (auto cidr = parseCidr(addr); cidr && addr.find('/') == std::string::npos) out.push_back(*cidr);
  }
  return out;
}

std::string usage() {
  return "usage: skiff-init [flags]  (istio-iptables compatible; rules go to inet table skiff_nat)\n"
         "  -p PORT   outbound capture port (15001)      -z PORT  inbound capture port (15006)\n"
         "  -e PORT   inbound tunnel port (15008)        -u UIDS  proxy uids (1337)   -g GIDS proxy gids (= "
         "-u)\n"
         "  -m MODE   REDIRECT|TPROXY   -t MARK tproxy mark (1337)   -r TABLE tproxy route table (133)\n"
         "  -b PORTS  inbound ports to capture ('*' = all)   -d PORTS inbound ports to skip (with -b '*')\n"
         "  -i CIDRS  outbound CIDRs to capture ('*' = all)  -x CIDRS outbound CIDRs to skip\n"
         "  -q PORTS  outbound ports always captured         -o PORTS outbound ports never captured\n"
         "  -k IFS    virtual interfaces (inbound treated as outbound)  -c IFS interfaces never captured\n"
         "  --redirect-dns  --capture-all-dns  --dry-run|-n  --cleanup  --check  --help\n"
         "  --run-validation [--iptables-probe-port 15002] [--probe-timeout 5s] [--skip-rule-apply]\n"
         "            after applying, prove a connection to 127.0.0.6:<probe port> reaches the capture "
         "ports\n";
}

}  // namespace skiff::init
