"""Helpers for the skiff-inject tests: running the CLI, kubectl's offline type check, JSON Patch, containers."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(os.environ.get("SKIFF_SOURCE_DIR", Path(__file__).resolve().parents[2]))
SHARED = REPO.parent / "shared"
BIN_DIR = Path(os.environ["SKIFF_BIN"]).parent if os.environ.get("SKIFF_BIN") else REPO / "build" / "bin"
INJECT_BIN = Path(os.environ.get("SKIFF_INJECT_BIN", BIN_DIR / "skiff-inject"))
CERTS_BIN = BIN_DIR / "skiff-certs"
CHECK_ENV = "SKIFF_KUBECTL_TYPECHECK"


def need_inject_bin():
    if not INJECT_BIN.exists():
        pytest.skip(f"skiff-inject not built: {INJECT_BIN}")
    return INJECT_BIN


def need_shared(*parts):
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared not present ({path} is missing)")
    return path


def run_inject(text, *flags, check=True):
    proc = subprocess.run([str(INJECT_BIN), "inject", "-f", "-", *flags], input=text, capture_output=True, text=True,
                          timeout=30)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def inject_docs(text, *flags):
    return [d for d in yaml.safe_load_all(run_inject(text, *flags).stdout) if d]


def pod_spec(obj):
    kind = obj["kind"]
    if kind == "Pod":
        return obj["spec"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def pod_meta(obj):
    kind = obj["kind"]
    if kind == "Pod":
        return obj["metadata"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
    return obj["spec"]["template"]["metadata"]


def container(spec, name, lists=("containers", "initContainers")):
    for lst in lists:
        for c in spec.get(lst) or []:
            if c["name"] == name:
                return c
    return None


# ------------------------------------------------------------------ kubectl's client-side type check

def kubectl_typecheck(docs):
    """Decodes the objects into the Kubernetes API's Go types with no cluster (`kubectl set env --local`, which
    decodes strictly by type and re-encodes), then compares with the input: a wrong type fails the decode, an
    unknown field name disappears from the round trip. Returns a list of problems (empty = valid)."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed")
    problems = []
    for doc in docs:
        proc = subprocess.run([kubectl, "set", "env", "--local", "-f", "-", "-o", "json", f"{CHECK_ENV}=1"],
                              input=json.dumps(doc), capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            problems.append(f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}: {proc.stderr.strip()}")
            continue
        back = json.loads(proc.stdout)
        _strip_check_env(back)
        _compare(doc, back, doc.get("kind", "?"), problems)
    return problems


def _strip_check_env(obj):
    if isinstance(obj, dict):
        for key in ("containers", "initContainers"):
            for c in obj.get(key) or []:
                env = [e for e in c.get("env") or [] if e.get("name") != CHECK_ENV]
                if env:
                    c["env"] = env
                else:
                    c.pop("env", None)
        for v in obj.values():
            _strip_check_env(v)
    elif isinstance(obj, list):
        for v in obj:
            _strip_check_env(v)


def _compare(ours, back, path, problems):
    """Everything we wrote must come back identical; the API types may add empty defaults (status: {},
    creationTimestamp: null, resources: {})."""
    if isinstance(ours, dict) and isinstance(back, dict):
        for k, v in ours.items():
            if k not in back:
                problems.append(f"{path}.{k}: not a field of the Kubernetes type (dropped by decoding)")
            else:
                _compare(v, back[k], f"{path}.{k}", problems)
    elif isinstance(ours, list) and isinstance(back, list) and len(ours) == len(back):
        for i, (a, b) in enumerate(zip(ours, back)):
            _compare(a, b, f"{path}[{i}]", problems)
    elif ours != back:
        problems.append(f"{path}: wrote {ours!r}, the API types read {back!r}")


# ------------------------------------------------------------------ JSON Patch (RFC 6902), for the webhook tests

def _unescape(token):
    return token.replace("~1", "/").replace("~0", "~")


def apply_patch(doc, ops):
    doc = json.loads(json.dumps(doc))
    for op in ops:
        tokens = [_unescape(t) for t in op["path"].split("/")[1:]]
        parent = doc
        for t in tokens[:-1]:
            parent = parent[int(t)] if isinstance(parent, list) else parent[t]
        last = tokens[-1]
        kind = op["op"]
        if isinstance(parent, list):
            idx = len(parent) if last == "-" else int(last)
            if kind == "add":
                assert idx <= len(parent), op["path"]
                parent.insert(idx, op["value"])
            elif kind == "replace":
                parent[idx] = op["value"]
            elif kind == "remove":
                del parent[idx]
            else:
                raise AssertionError(f"unexpected op {kind}")
        else:
            if kind == "add":
                parent[last] = op["value"]
            elif kind == "replace":
                assert last in parent, op["path"]
                parent[last] = op["value"]
            elif kind == "remove":
                del parent[last]
            else:
                raise AssertionError(f"unexpected op {kind}")
    return doc
