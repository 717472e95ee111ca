"""skiff-certs end to end: Istio layouts, openssl verify, a real mTLS handshake, file modes, renew, inspect."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from helpers import free_port, wait_until

BIN_DIR = Path(os.environ.get("SKIFF_BIN", Path(__file__).resolve().parents[2] / "build" / "bin" / "skiff")).parent
CERTS_BIN = Path(os.environ.get("SKIFF_CERTS_BIN", BIN_DIR / "skiff-certs"))
OPENSSL = shutil.which("openssl")


@pytest.fixture(scope="module")
def certs_bin():
    if not CERTS_BIN.exists():
        pytest.skip(f"skiff-certs not built: {CERTS_BIN}")
    if OPENSSL is None:
        pytest.skip("the openssl command-line tool is not installed")
    return CERTS_BIN


def run(certs_bin, *args, check=True):
    proc = subprocess.run([str(certs_bin), *map(str, args)], capture_output=True, text=True, timeout=60)
    # A crash shows up as a negative return code (signal); never acceptable, even for bad input.
    assert proc.returncode >= 0, f"skiff-certs crashed: {proc.returncode}\n{proc.stderr}"
    if check:
        assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stderr}"
    return proc


def fields(inspect_output):
    """inspect's 'key: value' lines as a dict of lists."""
    out = {}
    for line in inspect_output.splitlines():
        key, _, value = line.partition(": ")
        out.setdefault(key, []).append(value)
    return out


def split_chain(chain_path, tmp):
    """cert-chain.pem → (leaf file, intermediates file), for tools that take them apart."""
    end = "-----END CERTIFICATE-----\n"
    blocks = [b + end for b in Path(chain_path).read_text().split(end) if b.strip()]
    leaf, rest = tmp / (Path(chain_path).parent.name + "-leaf.pem"), tmp / (Path(chain_path).parent.name + "-inter.pem")
    leaf.write_text(blocks[0])
    rest.write_text("".join(blocks[1:]))
    return leaf, rest


@pytest.fixture(scope="module")
def mesh(certs_bin, tmp_path_factory):
    """root → cluster1 intermediate → server and client workloads."""
    base = tmp_path_factory.mktemp("mesh")
    run(certs_bin, "ca", "init", "--out", base / "root", "--trust-domain", "cluster.local")
    run(certs_bin, "ca", "intermediate", "--ca-dir", base / "root", "--out", base / "cluster1")
    run(certs_bin, "workload", "--ca-dir", base / "cluster1", "--out", base / "server", "--ns", "shop", "--sa",
        "cart", "--dns", "cart.shop.svc.cluster.local", "--ip", "127.0.0.1")
    run(certs_bin, "workload", "--ca-dir", base / "cluster1", "--out", base / "client",
        "--spiffe", "spiffe://cluster.local/ns/web/sa/frontend")
    return base


def test_istio_ca_layouts(mesh):
    root, inter = mesh / "root", mesh / "cluster1"
    for name in ("ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"):
        assert (root / name).is_file() and (inter / name).is_file(), name
    # Root: ca-cert == root-cert == cert-chain. Intermediate: cert-chain = intermediate + root.
    assert (root / "ca-cert.pem").read_text() == (root / "root-cert.pem").read_text()
    assert (root / "cert-chain.pem").read_text() == (root / "ca-cert.pem").read_text()
    assert (inter / "root-cert.pem").read_text() == (root / "ca-cert.pem").read_text()
    assert (inter / "cert-chain.pem").read_text() == (inter / "ca-cert.pem").read_text() + \
        (root / "ca-cert.pem").read_text()


def test_openssl_verifies_workload_chain(mesh):
    for name in ("server", "client"):
        d = mesh / name
        chain = (d / "cert-chain.pem").read_text()
        assert chain.count("BEGIN CERTIFICATE") == 2  # leaf + intermediate, never the root
        assert (d / "root-cert.pem").read_text() == (mesh / "root" / "ca-cert.pem").read_text()
        for purpose in ("sslserver", "sslclient"):
            proc = subprocess.run([OPENSSL, "verify", "-purpose", purpose, "-CAfile", d / "root-cert.pem",
                                   "-untrusted", d / "cert-chain.pem", d / "cert-chain.pem"],
                                  capture_output=True, text=True)
            assert proc.returncode == 0 and ": OK" in proc.stdout, proc.stdout + proc.stderr
        # Without the intermediate the chain does not verify: the check above is real.
        leaf, _ = split_chain(d / "cert-chain.pem", mesh)
        proc = subprocess.run([OPENSSL, "verify", "-CAfile", d / "root-cert.pem", leaf], capture_output=True,
                              text=True)
        assert proc.returncode != 0
    text = subprocess.run([OPENSSL, "x509", "-noout", "-text", "-in", mesh / "server" / "cert-chain.pem"],
                          capture_output=True, text=True, check=True).stdout
    assert "X509v3 Subject Alternative Name: critical" in text
    assert "URI:spiffe://cluster.local/ns/shop/sa/cart" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert "CA:FALSE" in text and "id-ecPublicKey" in text


def start_s_server(args, log_path):
    """openssl s_server on an ephemeral loopback port; retried if the port was taken meanwhile."""
    for _ in range(3):
        port = free_port()
        log = open(log_path, "w")
        proc = subprocess.Popen([OPENSSL, "s_server", "-accept", f"127.0.0.1:{port}", *map(str, args)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        if wait_until(lambda: proc.poll() is not None or "ACCEPT" in Path(log_path).read_text(), timeout=10):
            if proc.poll() is None:
                return proc, port
        proc.kill()
        proc.wait()
    pytest.fail(f"s_server did not start:\n{Path(log_path).read_text()}")


def s_client(port, args):
    return subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-verify_return_error",
                           "-ign_eof", *map(str, args)],
                          input="GET / HTTP/1.0\r\n\r\n", capture_output=True, text=True, timeout=20)


def test_mtls_handshake_between_two_workloads(mesh, certs_bin, tmp_path):
    srv, cli = mesh / "server", mesh / "client"
    srv_leaf, srv_inter = split_chain(srv / "cert-chain.pem", tmp_path)
    cli_leaf, cli_inter = split_chain(cli / "cert-chain.pem", tmp_path)
    server, port = start_s_server(["-cert", srv_leaf, "-cert_chain", srv_inter, "-key", srv / "key.pem",
                                   "-CAfile", srv / "root-cert.pem", "-Verify", "3", "-verify_return_error",
                                   "-www"], tmp_path / "s_server.log")
    try:
        ok = s_client(port, ["-cert", cli_leaf, "-cert_chain", cli_inter, "-key", cli / "key.pem",
                             "-CAfile", cli / "root-cert.pem", "-verify_ip", "127.0.0.1"])
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "Verification: OK" in ok.stdout and "TLSv1.3" in ok.stdout
        # The -www page echoes the client certificate the server verified: the client's SPIFFE ID.
        assert "Client certificate" in ok.stdout
        assert "URI:spiffe://cluster.local/ns/web/sa/frontend" in ok.stdout

        # No client certificate: the server requires one.
        anon = s_client(port, ["-CAfile", cli / "root-cert.pem"])
        assert "HTTP/1.0 200" not in anon.stdout
        assert "certificate required" in anon.stdout + anon.stderr

        # A client from another mesh (different root) is refused, and it does not trust our server either.
        other = tmp_path / "other"
        run(certs_bin, "ca", "init", "--out", other / "root")
        run(certs_bin, "workload", "--ca-dir", other / "root", "--out", other / "w", "--ns", "x", "--sa", "y")
        foreign = s_client(port, ["-cert", other / "w" / "cert-chain.pem", "-key", other / "w" / "key.pem",
                                  "-CAfile", cli / "root-cert.pem"])
        assert "HTTP/1.0 200" not in foreign.stdout
        distrust = s_client(port, ["-cert", cli_leaf, "-cert_chain", cli_inter, "-key", cli / "key.pem",
                                   "-CAfile", other / "w" / "root-cert.pem"])
        assert distrust.returncode != 0 and "HTTP/1.0 200" not in distrust.stdout
    finally:
        server.kill()
        server.wait()


def test_key_files_are_0600_and_dirs_0755(mesh, certs_bin, tmp_path):
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731  (follows the ..data symlinks)
    for key in (mesh / "root" / "ca-key.pem", mesh / "cluster1" / "ca-key.pem", mesh / "server" / "key.pem",
                mesh / "client" / "key.pem"):
        assert mode(key) == 0o600, key
    for d in (mesh / "root", mesh / "cluster1", mesh / "server"):
        assert mode(d) == 0o755, d
    # Even under a permissive umask keys are never group/world readable.
    old = os.umask(0)
    try:
        run(certs_bin, "ca", "init", "--out", tmp_path / "a" / "b")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a" / "b" / "ca-key.pem") == 0o600
    assert mode(tmp_path / "a") == 0o755


def test_refuses_to_overwrite_ca_key_without_force(certs_bin, tmp_path):
    ca = tmp_path / "ca"
    run(certs_bin, "ca", "init", "--out", ca)
    key = (ca / "ca-key.pem").read_bytes()
    cert = (ca / "ca-cert.pem").read_bytes()
    proc = run(certs_bin, "ca", "init", "--out", ca, check=False)
    assert proc.returncode == 1
    assert f"{ca}/ca-key.pem" in proc.stderr and "--force" in proc.stderr
    assert (ca / "ca-key.pem").read_bytes() == key and (ca / "ca-cert.pem").read_bytes() == cert
    run(certs_bin, "ca", "init", "--out", ca, "--force", "--rsa")
    assert (ca / "ca-key.pem").read_bytes() != key
    assert fields(run(certs_bin, "inspect", ca / "ca-cert.pem").stdout)["key"] == ["RSA 2048"]


def test_inspect_output(mesh, certs_bin, tmp_path):
    f = fields(run(certs_bin, "inspect", mesh / "server" / "cert-chain.pem").stdout)
    assert f["subject"] == ["(empty)"]
    assert f["issuer"] == ["CN=Skiff Intermediate CA,O=cluster.local"]
    assert f["uri"] == ["spiffe://cluster.local/ns/shop/sa/cart"]
    assert f["dns"] == ["cart.shop.svc.cluster.local"]
    assert f["ip"] == ["127.0.0.1"]
    assert f["key"] == ["EC P-256"] and f["ca"] == ["false"] and f["chain_length"] == ["2"]
    assert len(f["serial"][0]) == 32
    assert f["validity"][0].startswith("valid, expires in ")
    assert f["chain"] == ["ok"]
    # A root from another mesh, and an expired certificate, are reported with OpenSSL's reason.
    run(certs_bin, "ca", "init", "--out", tmp_path / "other")
    f = fields(run(certs_bin, "inspect", mesh / "server" / "cert-chain.pem", "--root",
                   tmp_path / "other" / "root-cert.pem").stdout)
    assert f["chain"] == ["unable to get local issuer certificate"]
    run(certs_bin, "workload", "--ca-dir", mesh / "cluster1", "--out", tmp_path / "old", "--ns", "a", "--sa", "b",
        "--hours", "1", "--backdate", "2h")
    f = fields(run(certs_bin, "inspect", tmp_path / "old" / "cert-chain.pem").stdout)
    assert f["chain"] == ["certificate has expired"] and f["validity"][0].startswith("expired")
    # With no root next to it, the chain status is unknown rather than guessed.
    (tmp_path / "lone.pem").write_text((mesh / "server" / "cert-chain.pem").read_text())
    assert fields(run(certs_bin, "inspect", tmp_path / "lone.pem").stdout)["chain"][0].startswith("unknown")


def test_renew(mesh, certs_bin, tmp_path):
    w = tmp_path / "w"
    run(certs_bin, "workload", "--ca-dir", mesh / "cluster1", "--out", w, "--ns", "shop", "--sa", "cart",
        "--dns", "cart.shop", "--hours", "6", "--rsa")
    before = fields(run(certs_bin, "inspect", w / "cert-chain.pem").stdout)
    proc = run(certs_bin, "renew", "--ca-dir", mesh / "cluster1", "--dir", w, "--before", "1h")
    assert proc.stdout.startswith("not due: ")
    assert fields(run(certs_bin, "inspect", w / "cert-chain.pem").stdout)["serial"] == before["serial"]
    proc = run(certs_bin, "renew", "--ca-dir", mesh / "cluster1", "--dir", w)  # default window 24h > 6h left
    assert proc.stdout.startswith("renewed ")
    after = fields(run(certs_bin, "inspect", w / "cert-chain.pem").stdout)
    assert after["serial"] != before["serial"]
    for key in ("uri", "dns", "key", "chain"):
        assert after[key] == before[key], key
    assert stat.S_IMODE(os.stat(w / "key.pem").st_mode) == 0o600
    # The new pair still works for openssl (key matches the certificate).
    leaf, _ = split_chain(w / "cert-chain.pem", tmp_path)
    pub_cert = subprocess.run([OPENSSL, "x509", "-noout", "-pubkey", "-in", leaf], capture_output=True,
                              text=True, check=True).stdout
    pub_key = subprocess.run([OPENSSL, "pkey", "-pubout", "-in", w / "key.pem"], capture_output=True, text=True,
                             check=True).stdout
    assert pub_cert == pub_key
    run(certs_bin, "renew", "--ca-dir", mesh / "cluster1", "--dir", w, "--before", "1m", "--force")
    assert fields(run(certs_bin, "inspect", w / "cert-chain.pem").stdout)["serial"] != after["serial"]


def test_errors_name_the_file_and_never_crash(certs_bin, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    proc = run(certs_bin, "inspect", bad, check=False)
    assert proc.returncode == 1 and str(bad) in proc.stderr
    (tmp_path / "empty.pem").write_bytes(b"")
    proc = run(certs_bin, "inspect", tmp_path / "empty.pem", check=False)
    assert proc.returncode == 1 and "no PEM certificate" in proc.stderr
    (tmp_path / "binary.pem").write_bytes(os.urandom(4096))
    assert run(certs_bin, "inspect", tmp_path / "binary.pem", check=False).returncode == 1
    proc = run(certs_bin, "workload", "--ca-dir", tmp_path / "missing", "--out", tmp_path / "w", "--ns", "a",
               "--sa", "b", check=False)
    assert proc.returncode == 1 and str(tmp_path / "missing") in proc.stderr
    ca = tmp_path / "ca"
    run(certs_bin, "ca", "init", "--out", ca)
    (ca / "ca-key.pem").write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    proc = run(certs_bin, "workload", "--ca-dir", ca, "--out", tmp_path / "w", "--ns", "a", "--sa", "b",
               check=False)
    assert proc.returncode == 1 and f"{ca}/ca-key.pem" in proc.stderr
    assert run(certs_bin, check=False).returncode == 2
    assert run(certs_bin, "workload", "--bogus", check=False).returncode == 2
