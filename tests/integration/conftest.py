"""Fixtures for the integration suite: free ports, a real httpbin backend, and a running skiff."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import helpers  # noqa: E402  (needs the path above)
from helpers import Skiff, free_port, wait_until  # noqa: E402,F401

REPO = Path(os.environ.get("SKIFF_SOURCE_DIR", Path(__file__).resolve().parents[2]))
SKIFF_BIN = Path(os.environ.get("SKIFF_BIN", REPO / "build" / "bin" / "skiff"))
SHARED = REPO.parent / "shared"
SEEDS = SHARED / "fixtures" / "seeds"
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Keeps each phase's report on the item so fixtures can print skiff's stderr when a test failed.
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


def pytest_sessionfinish(session, exitstatus):
    # CTest treats 77 as "skipped": report it when nothing ran because everything skipped.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or exitstatus != 0:
        return
    passed = len(reporter.stats.get("passed", []))
    skipped = len(reporter.stats.get("skipped", []))
    if passed == 0 and skipped > 0:
        session.exitstatus = 77


@pytest.fixture(scope="session")
def skiff_bin():
    if not SKIFF_BIN.exists():
        pytest.skip(f"skiff binary not built: {SKIFF_BIN}")
    return SKIFF_BIN


@pytest.fixture(scope="session")
def seeds():
    if not SEEDS.is_dir():
        pytest.skip(f"../shared not present ({SEEDS} is missing); the seed configs live there")
    return SEEDS


def _start_httpbin(log_path):
    port = free_port()
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-k", "gthread", "--threads", "8",
         "--graceful-timeout", "1", "httpbin:app"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    return proc, port


def _stop_group(proc):
    # gunicorn forks workers; they share the process group we created for it.
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=5)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture(scope="session")
def httpbin(tmp_path_factory):
    """A real httpbin (gunicorn) on 127.0.0.1:<free port>; yields the port."""
    try:
        import httpbin as _  # noqa: F401
        import gunicorn as _g  # noqa: F401
    except ImportError as e:
        pytest.skip(f"python3-httpbin / gunicorn not installed: {e}")
    log_path = tmp_path_factory.mktemp("httpbin") / "gunicorn.log"
    proc, port = _start_httpbin(log_path)
    try:
        ok = wait_until(lambda: proc.poll() is None and helpers.http_status(port, "/status/200") == 200,
                        timeout=30, interval=0.1)
        if not ok:
            pytest.fail(f"httpbin did not come up on {port}:\n{log_path.read_text(errors='replace')}")
        yield port
    finally:
        _stop_group(proc)


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


@pytest.fixture
def skiff_factory(request, tmp_path, skiff_bin):
    """Starts skiffs: skiff_factory(config_text_or_dict, args=[...]) -> running Skiff. All are stopped."""
    started = []

    def start(config, *, args=(), concurrency=2, wait_ready=True, name=None):
        s = Skiff(skiff_bin, tmp_path / (name or f"skiff{len(started)}"), config, args=list(args),
                  concurrency=concurrency)
        started.append(s)
        s.start(wait_ready=wait_ready)
        return s

    yield start
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    sanitizer_reports = []
    for s in started:
        s.stop()
        if failed:
            sys.stderr.write(f"---- skiff stderr ({s.workdir}) ----\n{s.logs}\n")
        # Under the ASan+UBSan build a report in stderr fails the test even when the traffic looked fine.
        if any(marker in s.logs for marker in SANITIZER_MARKERS):
            sanitizer_reports.append(f"---- sanitizer report ({s.workdir}) ----\n{s.logs}")
    if sanitizer_reports:
        pytest.fail("\n".join(sanitizer_reports), pytrace=False)


@pytest.fixture
def nghttpd(tmp_path):
    """nghttpd serving index.html and big.bin (512000 bytes: beyond the 64 KiB window) over h2c."""
    from http2_helpers import Nghttpd
    if shutil.which("nghttpd") is None and not os.path.exists("/usr/sbin/nghttpd"):
        pytest.skip("nghttpd (Debian package nghttp2-server) is not installed")
    docroot = tmp_path / "www"
    docroot.mkdir()
    (docroot / "index.html").write_text("hello from nghttpd\n")
    (docroot / "big.bin").write_bytes(bytes(range(256)) * 2000)
    server = Nghttpd(docroot, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def held():
    """A backend that holds every request until held.release() (holding_backend.py)."""
    from holding_backend import HoldingBackend
    backend = HoldingBackend()
    yield backend
    backend.close()
