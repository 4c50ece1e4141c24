"""Pre-flight: check that a board can take a bundle BEFORE anything is written to it.

One read-only remote call (no mkdir, no lock, no upload) runs a small script with the board's
python and reports facts: the board's CPU (`platform.machine()`, and whether the board says it is
emulated: EDGEPIPE_BOARD_EMULATED, set only by the test boards under qemu-user), the python's
version, numpy, each runtime the bundle's format can use (with its version), whether the install
path is (or can be made) a directory the login user can write, and the free space there. The host
compares them with what the bundle needs (`manifest["isa"]`: the CPUs its model runs on, absent =
any; `manifest["requires"]`: the oldest runtimes; the bundle's size) and raises one RemoteError
that lists every problem: what was expected, what was received, how to fix it. Statuses:
"no python", "isa", "runtime", "remote path not writable", "no tar", "no space". `board_facts` runs the same
script for `edgepipe board status` (every board runtime, no bundle).

The script avoids f-strings so that even a Python 2 on the board can run it and be reported.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from edgepipe.boards.remote import Remote
from edgepipe.core.errors import RemoteError

MIN_PYTHON = (3, 7)
MIN_NUMPY = "1.16"
PIP_NAMES = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime", "openvino": "openvino"}
SUBDIRS = ("bundles", "runner", ".staging")

# Runs with the board's python before anything is uploaded, so it cannot import the on-board runner:
# `version` below is device_runner.dist_version's twin (keep the two alike).
_SCRIPT = r"""
import json, os, platform, sys
root, dirname, runtimes = os.path.expanduser(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
out = {"python": "%d.%d.%d" % tuple(sys.version_info[:3]), "executable": sys.executable,
       "machine": platform.machine(), "emulated": os.environ.get("EDGEPIPE_BOARD_EMULATED") or None}

def err(e):
    return "%s: %s" % (type(e).__name__, e)

def version(mod, dist):
    v = getattr(mod, "__version__", None)
    if v:
        return str(v)
    try:
        from importlib import metadata
        return metadata.version(dist)
    except Exception:
        return "unknown"

try:
    import numpy
    out["numpy"] = {"version": str(numpy.__version__)}
except Exception as e:
    out["numpy"] = {"error": err(e)}
out["runtimes"] = {}
for rt, dist in runtimes:
    try:
        if rt == "openvino":
            import openvino as mod
        else:
            mod = __import__(rt)
            __import__(rt + ".interpreter", fromlist=["Interpreter"]).Interpreter
        out["runtimes"][rt] = {"version": version(mod, dist)}
    except Exception as e:
        out["runtimes"][rt] = {"error": err(e)}
try:
    import pwd
    out["user"] = pwd.getpwuid(os.getuid()).pw_name
except Exception:
    out["user"] = str(os.getuid())
base = root
while not os.path.lexists(base) and os.path.dirname(base) != base:
    base = os.path.dirname(base)
out["root"], out["base"], out["root_exists"] = root, base, os.path.lexists(root)
bad = []
for p in [base] + [os.path.join(root, s) for s in sys.argv[4:]]:
    if p != base and not os.path.lexists(p):
        continue
    if not os.path.isdir(p):
        bad.append({"path": p, "problem": "not a directory"})
    elif not os.access(p, os.W_OK | os.X_OK):
        bad.append({"path": p, "problem": "not writable"})
out["unwritable"] = bad
try:
    st = os.statvfs(base if os.path.isdir(base) else os.path.dirname(base))
    out["free_bytes"] = st.f_bavail * st.f_frsize
except Exception as e:
    out["free_bytes"] = None
out["bundle_exists"] = os.path.isdir(os.path.join(root, "bundles", dirname))
out["home"] = os.path.expanduser("~")
out["tar"] = any(os.access(os.path.join(d, "tar"), os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep) if d)
sys.stdout.write(json.dumps(out) + "\n")
"""


def upload_bytes(bundle_dir: Path, *extra: Path) -> int:
    """What an upload puts on the board: every file of the bundle, plus the runner and key."""
    files = [p for p in Path(bundle_dir).rglob("*") if p.is_file()] + [Path(p) for p in extra]
    return sum(p.stat().st_size for p in files)


def probe(remote: Remote, manifest: dict, dirname: str) -> tuple[int, str, str]:
    from edgepipe.boards.device_runner import RUNTIMES_FOR_FORMAT

    return _run_script(remote, RUNTIMES_FOR_FORMAT.get(manifest["model"]["format"], ()), dirname)


def _run_script(remote: Remote, runtimes, dirname: str) -> tuple[int, str, str]:
    d = remote.device
    pairs = [[rt, PIP_NAMES.get(rt, rt)] for rt in runtimes]
    cmd = (f"{shlex.quote(d.python)} -c {shlex.quote(_SCRIPT)} {d.q()} {shlex.quote(dirname)} "
           f"{shlex.quote(json.dumps(pairs))} {' '.join(SUBDIRS)}")
    res = remote.run(cmd)
    return res.returncode, res.stdout, res.stderr


def board_facts(remote: Remote) -> dict:
    """What the board runs (read-only): CPU, emulated or not, python, numpy and every board runtime with its
    version, for `edgepipe board status`. A board whose python cannot run the script: {"error": ...}."""
    from edgepipe.boards.device_runner import RUNTIMES_FOR_FORMAT, isa_of

    runtimes = list(dict.fromkeys(rt for names in RUNTIMES_FOR_FORMAT.values() for rt in names))
    code, stdout, stderr = _run_script(remote, runtimes, "")
    facts = _parse(stdout)
    if facts is None:
        return {"error": _no_python(remote.device, code, stderr)}
    return {**_board_summary(facts), "isa": isa_of(facts.get("machine"))}


def check_board(remote: Remote, manifest: dict, dirname: str, need_bytes: int) -> dict:
    """Run the pre-flight on the board; the facts on success, a RemoteError naming every problem otherwise."""
    code, stdout, stderr = probe(remote, manifest, dirname)
    facts = _parse(stdout)
    d = remote.device
    if facts is None:
        raise RemoteError(_no_python(d, code, stderr), "no python")
    problems = evaluate(facts, manifest, need_bytes, d)
    if problems:
        raise RemoteError(f"{d.label}: the board is not ready for {manifest.get('name')} v"
                          f"{manifest.get('bundle_version')} (pre-flight; nothing was written to it):\n"
                          + "\n".join(f"- {msg}" for _, msg in problems), problems[0][0])
    return {**_board_summary(facts), "free_bytes": facts.get("free_bytes"), "user": facts.get("user")}


def _board_summary(facts: dict) -> dict:
    return {k: facts.get(k) for k in ("machine", "emulated", "python", "executable", "numpy", "runtimes")}


def evaluate(facts: dict, manifest: dict, need_bytes: int, device) -> list[tuple[str, str]]:
    """[(status, message)] for each way the board falls short of what the bundle needs."""
    problems = []
    py_hint = ("install python3 on the board, or name the one to use with ?python=/path/to/python3 in the board "
               "URL or --remote-python /path/to/python3")
    have = tuple(int(x) for x in facts["python"].split(".")[:2])
    if have < MIN_PYTHON:
        problems.append(("no python", f"python: expected Python >= {'.'.join(map(str, MIN_PYTHON))} at "
                                      f"{device.python!r}. Received: Python {facts['python']} "
                                      f"({facts.get('executable')}). Fix: {py_hint}"))
        return problems  # nothing else this python reports can be trusted
    isa = _isa_problem(facts, manifest)
    if isa:
        problems.append(("isa", isa))
    runtime = _runtime_problem(facts, manifest)
    if runtime:
        problems.append(("runtime", runtime))
    bad = facts.get("unwritable") or []
    if bad:
        received = "; ".join(f"{b['path']} is {b['problem']}" for b in bad)
        problems.append(("remote path not writable",
                         f"install path: expected {facts['root']} to be a directory that {facts.get('user')} can "
                         f"write (or create). Received: {received}. Fix: ship to a path under the login user's "
                         f"home (ssh://{device.destination}/~/edge), or on the board: sudo mkdir -p {facts['root']} "
                         f"&& sudo chown -R {facts.get('user')} {facts['root']}"))
    if facts.get("tar") is False:  # older runners' facts have no "tar": not checked
        problems.append(("no tar", "tar: expected `tar` on the board's PATH (an upload is one tar stream). Received: "
                                   "not found. Fix: on the board, install tar (apt-get install tar, or busybox tar)"))
    free = facts.get("free_bytes")
    if free is not None and free < need_bytes:
        problems.append(("no space", f"free space: expected at least {_mib(need_bytes)} free on the board at "
                                     f"{facts['base']} (the bundle and the runner). Received: {_mib(free)} free. "
                                     f"Fix: free space on the board (old bundles in {facts['root']}/bundles/ can go) "
                                     "or ship to a path on a larger filesystem"))
    return problems


def _isa_problem(facts: dict, manifest: dict) -> str | None:
    from edgepipe.boards.device_runner import isa_problem

    problem = isa_problem(manifest, facts.get("machine"))
    if problem is None:
        return None
    emulated = f", emulated: {facts['emulated']}" if facts.get("emulated") else ""
    return (f"{problem} (platform.machine() on the board{emulated}). Fix: ship a bundle built for this board's CPU "
            "(a TFLite bundle runs on any: edgepipe run with a tflite target, then edgepipe bundle), or ship this "
            "one to a board with one of those CPUs")


def _runtime_problem(facts: dict, manifest: dict) -> str | None:
    from edgepipe.boards.device_runner import RUNTIMES_FOR_FORMAT, version_at_least

    fmt = manifest["model"]["format"]
    requires = manifest.get("requires") or {}
    names = RUNTIMES_FOR_FORMAT.get(fmt, ())
    missing, received = [], []
    numpy = facts.get("numpy") or {}
    if "error" in numpy:
        missing.append("numpy")
        received.append(f"numpy: {numpy['error']}")
    elif not version_at_least(numpy["version"], MIN_NUMPY):
        missing.append(f"numpy>={MIN_NUMPY}")
        received.append(f"numpy {numpy['version']}")
    usable = []
    for rt in names:
        got = (facts.get("runtimes") or {}).get(rt) or {"error": "not checked"}
        need = requires.get(rt)
        if "error" in got:
            received.append(f"{rt}: {got['error']}")
        elif need and got["version"] != "unknown" and not version_at_least(got["version"], need):
            received.append(f"{rt} {got['version']} (older than {need})")
        else:
            usable.append(rt)
    if names and not usable:
        missing.append(" or ".join(f"{PIP_NAMES.get(rt, rt)}>={requires[rt]}" if requires.get(rt)
                                   else PIP_NAMES.get(rt, rt) for rt in names))
    if not missing:
        return None
    wanted = ", ".join(f"{rt} >= {requires[rt]}" if requires.get(rt) else rt for rt in names)
    pkgs = " ".join(shlex.quote(m.split(" or ")[0]) for m in missing)
    return (f"python packages: expected numpy >= {MIN_NUMPY} and one of {wanted} importable by "
            f"{facts.get('executable')} on the board (the bundle is a {fmt} model). Received: {'; '.join(received)}. "
            f"Fix: on the board, python3 -m venv ~/edgepipe-venv && ~/edgepipe-venv/bin/pip install {pkgs} "
            f"(needs: {', '.join(missing)}), then ship with "
            f"?python={facts.get('home') or '~'}/edgepipe-venv/bin/python "
            "in the board URL or --remote-python; on Raspberry Pi OS and Debian 12+ a system-wide pip install is "
            "refused as an externally-managed environment (PEP 668), so use a venv")


def _no_python(device, code: int, stderr: str) -> str:
    why = {127: "not found", 126: "not executable"}.get(code, f"exit {code}, no pre-flight report")
    tail = stderr.strip()[-300:]
    return (f"{device.label}: expected a Python >= {'.'.join(map(str, MIN_PYTHON))} on the board at "
            f"{device.python!r}. Received: {why}{': ' + tail if tail else ''}. Fix: install python3 on the board, "
            "or name the one to use with ?python=/path/to/python3 in the board URL or --remote-python "
            "/path/to/python3 (nothing was written to the board)")


def _parse(stdout: str) -> dict | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            out = json.loads(line)
        except ValueError:
            continue
        if isinstance(out, dict) and "python" in out:
            return out
    return None


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB ({n} bytes)"
