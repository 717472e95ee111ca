"""skiff-init against real kernels: every test runs in network namespaces it creates and always deletes."""

import itertools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(os.environ.get("SKIFF_SOURCE_DIR", Path(__file__).resolve().parents[2]))
_SKIFF_BIN = os.environ.get("SKIFF_BIN")
INIT_BIN = Path(_SKIFF_BIN).parent / "skiff-init" if _SKIFF_BIN else REPO / "build" / "bin" / "skiff-init"
PYTHON = "/usr/bin/python3"
_names = itertools.count()

# A tiny TCP "proxy": answers every connection with what it learnt, then closes it. In "proxy" mode the
# answer is the original destination (SO_ORIGINAL_DST, 80), which only exists when REDIRECT fired; in
# "transparent" mode it is the socket's local address, which TPROXY keeps as the original destination.
SERVER = r"""
import socket, struct, sys
mode, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if mode == "transparent":
    s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT: accept connections TPROXY hands over
s.bind(("0.0.0.0", port))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    if mode == "proxy":
        d = c.getsockopt(socket.SOL_IP, 80, 16)
        msg = "proxy:%d %s:%d" % (port, socket.inet_ntoa(d[4:8]), struct.unpack("!H", d[2:4])[0])
    elif mode == "transparent":
        msg = "tproxy:%d %s:%d" % ((port,) + c.getsockname())
    else:
        msg = "direct"
    c.sendall(msg.encode())
    c.close()
"""

UDP_SERVER = r"""
import socket, sys
name, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", port))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(512)
    s.sendto(name.encode(), peer)
"""

UDP_CLIENT = r"""
import socket, sys
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(5)
c.sendto(b"q", (sys.argv[1], int(sys.argv[2])))
print(c.recvfrom(200)[0].decode())
"""

CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print(c.recv(200).decode())
"""


def _run(args, check=True, **kw):
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}): {proc.stderr}")
    return proc


@pytest.fixture(scope="module", autouse=True)
def _requirements():
    if os.geteuid() != 0:
        pytest.skip("skiff-init tests need root (network namespaces, nftables)")
    if not shutil.which("ip") or not shutil.which("nft"):
        pytest.skip("the ip and nft tools are needed to create and inspect namespaces")
    if not INIT_BIN.exists():
        pytest.skip(f"skiff-init not built: {INIT_BIN}")
    probe = f"skiff-init-{os.getpid()}-probe"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        pytest.skip("`ip netns add` is not permitted here")
    try:
        nat = _probe_nft(probe, "chain o {\ntype nat hook output priority -100;\nmeta l4proto tcp redirect to :1\n}")
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    if nat:
        pytest.skip(f"this kernel cannot run nftables nat redirect rules: {nat}")


def _probe_nft(ns, chain):
    """Loads a throwaway table in `ns`; returns nft's error text, or "" when the kernel accepts it."""
    script = f"table inet skiff_probe {{\n{chain}\n}}\ndelete table inet skiff_probe\n"
    proc = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, capture_output=True,
                          text=True)
    return proc.stderr.strip() if proc.returncode else ""


@pytest.fixture
def tproxy_supported(netns):
    err = _probe_nft(netns.name, "chain p {\ntype filter hook prerouting priority -150;\n"
                                 "meta nfproto ipv4 meta l4proto tcp tproxy ip to :1\n}")
    if err:
        pytest.skip(f"this kernel lacks nftables tproxy: {err}")


class Netns:
    def __init__(self):
        self.name = f"skiff-init-{os.getpid()}-{next(_names)}"
        _run(["ip", "netns", "add", self.name])
        self.procs = []

    def run(self, *args, check=True, **kw):
        return _run(["ip", "netns", "exec", self.name, *args], check=check, **kw)

    def init(self, *flags, check=True):
        return self.run(str(INIT_BIN), *flags, check=check)

    def ruleset(self):
        return json.loads(self.run("nft", "-j", "list", "ruleset").stdout)

    def spawn(self, *args, prefix=()):
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *prefix, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def close(self):
        for proc in self.procs:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@pytest.fixture
def netns_factory():
    created = []

    def make():
        ns = Netns()
        created.append(ns)
        return ns

    try:
        yield make
    finally:
        for ns in created:
            ns.close()


@pytest.fixture
def netns(netns_factory):
    return netns_factory()


def _strip_handles(value):
    if isinstance(value, dict):
        return {k: _strip_handles(v) for k, v in value.items() if k != "handle"}
    if isinstance(value, list):
        return [_strip_handles(v) for v in value]
    return value


def _items(ruleset, kind, table="skiff_nat"):
    return [x[kind] for x in ruleset["nftables"] if kind in x and x[kind].get("table", x[kind].get("name")) == table]


def _rules(ruleset, chain, table="skiff_nat"):
    return [r for r in _items(ruleset, "rule", table) if r["chain"] == chain]


DEFAULT_POD = ["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d",
               "15090,15021,15020"]


def test_rules_appear_in_the_namespace(netns):
    netns.init(*DEFAULT_POD)
    rs = netns.ruleset()
    tables = _items(rs, "table")
    assert [t["family"] for t in tables] == ["inet"]
    chains = {c["name"]: c for c in _items(rs, "chain")}
    assert chains["output"]["hook"] == "output" and chains["output"]["type"] == "nat"
    assert chains["prerouting"]["hook"] == "prerouting"
    redirect = json.dumps(_rules(rs, "istio-redirect"))
    assert '"redirect": {"port": 15001}' in redirect
    assert '"redirect": {"port": 15006}' in json.dumps(_rules(rs, "istio-in-redirect"))
    inbound = json.dumps(_rules(rs, "istio-inbound"))
    for port in (15008, 15090, 15021, 15020):
        assert f'"right": {port}' in inbound
    output = _rules(rs, "istio-output")
    assert len(output) == 13
    assert "127.0.0.6" in json.dumps(output[0])
    assert '"jump": {"target": "istio-redirect"}' in json.dumps(output[-1])


def test_running_twice_yields_the_same_ruleset(netns):
    netns.init(*DEFAULT_POD)
    first = _strip_handles(netns.ruleset())
    netns.init(*DEFAULT_POD)
    assert _strip_handles(netns.ruleset()) == first
    assert netns.init("--check", *DEFAULT_POD).returncode == 0


def test_rerun_with_other_flags_replaces_the_table(netns):
    netns.init(*DEFAULT_POD)
    netns.init("-i", "10.0.0.0/8")
    rs = netns.ruleset()
    assert not _rules(rs, "prerouting") and not [c for c in _items(rs, "chain") if c["name"] == "prerouting"]
    assert '"prefix": {"addr": "10.0.0.0", "len": 8}' in json.dumps(_rules(rs, "istio-output")[-1])


def test_cleanup_leaves_the_ruleset_as_before(netns, tmp_path):
    other = tmp_path / "other.nft"
    other.write_text("table inet other {\n chain input {\n  type filter hook input priority 0;\n"
                     "  tcp dport 22 counter accept\n }\n}\n")
    netns.run("nft", "-f", str(other))
    before = netns.ruleset()
    assert netns.init("--cleanup").returncode == 0  # nothing of ours there yet
    assert netns.ruleset() == before
    netns.init(*DEFAULT_POD, "--redirect-dns", "--capture-all-dns")
    assert netns.ruleset() != before
    assert netns.init("--cleanup").returncode == 0
    assert netns.ruleset() == before


def test_dry_run_loads_with_nft_and_touches_nothing(netns_factory):
    flags = [*DEFAULT_POD, "-x", "10.96.0.0/12,fd00::/8", "-o", "25", "-q", "3306", "-k", "net1", "-c", "eth9",
             "--redirect-dns", "--capture-all-dns"]
    a = netns_factory()
    before = a.ruleset()
    script = a.init("--dry-run", *flags).stdout
    assert a.ruleset() == before
    assert script.startswith("add table inet skiff_nat\n")
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as f:
        f.write(script)
        f.flush()
        a.run("nft", "-c", "-f", f.name)
        # The text and the netlink path describe the same ruleset.
        a.run("nft", "-f", f.name)
        b = netns_factory()
        b.init(*flags)
        assert _strip_handles(a.ruleset()) == _strip_handles(b.ruleset())


@pytest.mark.parametrize("flag,value", [("-i", "10.0.0.0/33"), ("-x", "not-a-cidr"), ("-b", "80,http"),
                                        ("-d", "70000"), ("-o", "0"), ("-q", "1-2"), ("-m", "NAT")])
def test_bad_flag_leaves_the_ruleset_unchanged(netns, flag, value):
    netns.init(*DEFAULT_POD)
    before = netns.ruleset()
    proc = netns.init(*DEFAULT_POD, flag, value, check=False)
    assert proc.returncode == 2
    assert flag in proc.stderr and value in proc.stderr
    assert netns.ruleset() == before


def test_check_detects_a_rule_deleted_by_hand(netns):
    netns.init(*DEFAULT_POD)
    assert netns.init("--check", *DEFAULT_POD).returncode == 0
    rs = netns.ruleset()
    victim = _rules(rs, "istio-output")[4]
    netns.run("nft", "delete", "rule", "inet", "skiff_nat", "istio-output", "handle", str(victim["handle"]))
    proc = netns.init("--check", *DEFAULT_POD, check=False)
    assert proc.returncode != 0
    assert "istio-output" in proc.stderr
    # Other flags than the installed ones are drift too, and so is a missing table.
    netns.init(*DEFAULT_POD)
    assert netns.init("--check", *DEFAULT_POD, "-p", "16001", check=False).returncode != 0
    netns.init("--cleanup")
    assert netns.init("--check", *DEFAULT_POD, check=False).returncode != 0


def _wait_ready(proc):
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read()


def test_real_redirect_and_proxy_uid_bypass(netns_factory):
    pod, peer = _pod_and_peer(netns_factory)

    for ns, mode, port in ((pod, "proxy", 15001), (pod, "proxy", 15006), (pod, "direct", 8081),
                            (peer, "direct", 8080)):
        _wait_ready(ns.spawn(PYTHON, "-c", SERVER, mode, str(port)))

    def connect(ns, host, port, prefix=()):
        return ns.run(*prefix, PYTHON, "-c", CLIENT, host, str(port)).stdout.strip()

    # Without rules the peer answers.
    assert connect(pod, "10.250.0.2", 8080) == "direct"
    pod.init("-i", "*", "-b", "*")
    # The app's outbound connection lands on the outbound listener, original destination intact.
    assert connect(pod, "10.250.0.2", 8080) == "proxy:15001 10.250.0.2:8080"
    # The proxy's own traffic (uid 1337) is never captured.
    as_proxy = ("setpriv", "--reuid", "1337", "--regid", "1337", "--clear-groups")
    assert connect(pod, "10.250.0.2", 8080, prefix=as_proxy) == "direct"
    # Inbound traffic from the peer lands on the inbound listener.
    assert connect(peer, "10.250.0.1", 9000) == "proxy:15006 10.250.0.1:9000"
    # The app calling its own pod IP (over lo) is not captured; the proxy doing so goes to inbound.
    assert connect(pod, "10.250.0.1", 8081) == "direct"
    assert connect(pod, "10.250.0.1", 8081, prefix=as_proxy) == "proxy:15006 10.250.0.1:8081"
    pod.init("--cleanup")
    assert connect(pod, "10.250.0.2", 8080) == "direct"


def _pod_and_peer(netns_factory):
    pod, peer = netns_factory(), netns_factory()
    pod.run("ip", "link", "set", "lo", "up")
    peer.run("ip", "link", "set", "lo", "up")
    pod.run("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", peer.name)
    pod.run("ip", "addr", "add", "10.250.0.1/24", "dev", "v0")
    peer.run("ip", "addr", "add", "10.250.0.2/24", "dev", "v1")
    pod.run("ip", "link", "set", "v0", "up")
    peer.run("ip", "link", "set", "v1", "up")
    return pod, peer


TPROXY_POD = ["-m", "TPROXY", "-i", "*", "-b", "*", "-d", "15020"]


def test_tproxy_rules_routes_check_and_cleanup(netns, tproxy_supported):
    netns.run("ip", "link", "set", "lo", "up")
    before_rules = netns.run("ip", "rule").stdout
    before = netns.ruleset()
    netns.init(*TPROXY_POD)
    netns.init(*TPROXY_POD)  # twice: still one rule and one route
    rules = netns.run("ip", "rule").stdout
    assert rules.count("fwmark 0x539 lookup 133") == 1
    assert netns.run("ip", "-6", "rule").stdout.count("fwmark 0x539 lookup 133") == 1
    assert "local default dev lo" in netns.run("ip", "route", "show", "table", "133").stdout
    assert "local default dev lo" in netns.run("ip", "-6", "route", "show", "table", "133").stdout
    rs = netns.ruleset()
    mangle = {c["name"]: c for c in _items(rs, "chain", table="skiff_mangle")}
    assert mangle["prerouting"]["type"] == "filter" and mangle["output"]["type"] == "route"
    tproxy = json.dumps(_rules(rs, "istio-tproxy", table="skiff_mangle"))
    assert '"tproxy": {"family": "ip", "port": 15006}' in tproxy
    assert '"tproxy": {"family": "ip6", "port": 15006}' in tproxy
    # Inbound capture moved to mangle: nat has no prerouting chain.
    assert "prerouting" not in {c["name"] for c in _items(rs, "chain")}
    assert netns.init("--check", *TPROXY_POD).returncode == 0
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as f:
        f.write(netns.init("--dry-run", *TPROXY_POD).stdout)
        f.flush()
        netns.run("nft", "-c", "-f", f.name)
    assert netns.init("--check", *DEFAULT_POD, check=False).returncode != 0
    # Switching to REDIRECT drops the mangle table in the same batch.
    netns.init(*DEFAULT_POD)
    assert not _items(netns.ruleset(), "table", table="skiff_mangle")
    assert netns.init("--check", *DEFAULT_POD).returncode == 0
    netns.init(*TPROXY_POD)
    netns.init("--cleanup")
    assert netns.ruleset() == before
    assert netns.run("ip", "rule").stdout == before_rules
    assert netns.run("ip", "route", "show", "table", "133").stdout == ""


def test_tproxy_inbound_keeps_the_original_destination(netns_factory, tproxy_supported):
    pod, peer = _pod_and_peer(netns_factory)
    for ns, mode, port in ((pod, "transparent", 15006), (pod, "direct", 15020), (pod, "proxy", 15001)):
        _wait_ready(ns.spawn(PYTHON, "-c", SERVER, mode, str(port)))

    def connect(ns, host, port):
        return ns.run(PYTHON, "-c", CLIENT, host, str(port)).stdout.strip()

    pod.init(*TPROXY_POD)
    # The inbound listener accepts the connection as if it were 10.250.0.1:9000 itself.
    assert connect(peer, "10.250.0.1", 9000) == "tproxy:15006 10.250.0.1:9000"
    # -d ports are not captured.
    assert connect(peer, "10.250.0.1", 15020) == "direct"
    # Outbound stays REDIRECT in TPROXY mode.
    assert connect(pod, "10.250.0.2", 8080) == "proxy:15001 10.250.0.2:8080"


def test_dns_capture_redirects_udp_53_except_for_the_proxy(netns_factory):
    pod, peer = _pod_and_peer(netns_factory)
    _wait_ready(pod.spawn(PYTHON, "-c", UDP_SERVER, "agent", "15053"))
    _wait_ready(peer.spawn(PYTHON, "-c", UDP_SERVER, "upstream", "53"))

    def ask(prefix=()):
        return pod.run(*prefix, PYTHON, "-c", UDP_CLIENT, "10.250.0.2", "53").stdout.strip()

    assert ask() == "upstream"
    pod.init("-i", "*", "--redirect-dns", "--capture-all-dns")
    assert ask() == "agent"
    # The agent's own upstream queries (uid 1337) go out untouched.
    assert ask(prefix=("setpriv", "--reuid", "1337", "--regid", "1337", "--clear-groups")) == "upstream"


def test_run_validation_proves_the_redirect(netns):
    netns.run("ip", "link", "set", "lo", "up")
    proc = netns.init(*DEFAULT_POD, "--run-validation")
    assert "validation passed" in proc.stdout
    # Validation only, against rules that are already in place (Istio's CNI istio-validation container).
    assert netns.init("--skip-rule-apply", "--run-validation", *DEFAULT_POD).returncode == 0


def test_run_validation_in_tproxy_mode(netns, tproxy_supported):
    netns.run("ip", "link", "set", "lo", "up")
    assert netns.init(*TPROXY_POD, "--run-validation").returncode == 0


@pytest.mark.parametrize("flags", [["--skip-rule-apply"],  # nothing installed
                                   [*DEFAULT_POD, "-c", "lo"]])  # installed, but lo is exempt: no capture
def test_run_validation_fails_with_126_when_nothing_is_redirected(netns, flags):
    netns.run("ip", "link", "set", "lo", "up")
    proc = netns.init(*flags, "--run-validation", "--probe-timeout", "700ms", check=False)
    assert proc.returncode == 126, proc.stderr
    assert "validation failed" in proc.stderr and "127.0.0.6:15002" in proc.stderr


def test_run_validation_reports_a_busy_capture_port(netns):
    netns.run("ip", "link", "set", "lo", "up")
    netns.init(*DEFAULT_POD)
    for port in (15001, 15006):
        _wait_ready(netns.spawn(PYTHON, "-c", SERVER, "direct", str(port)))
    proc = netns.init("--skip-rule-apply", "--run-validation", *DEFAULT_POD, check=False)
    assert proc.returncode == 126 and "cannot listen on 127.0.0.1:15001" in proc.stderr


def test_bad_probe_timeout_is_a_usage_error(netns):
    proc = netns.init("--run-validation", "--probe-timeout", "soon", check=False)
    assert proc.returncode == 2 and "--probe-timeout" in proc.stderr
