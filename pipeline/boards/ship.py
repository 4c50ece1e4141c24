"""`edgepipe ship`: put a verified bundle on a board and switch to it atomically, or roll back.

Board layout under the device path R:

    R/runner/device_runner.py     the on-device runner (uploaded with every ship)
    R/trusted.pub                 the signing public key the board trusts (installed on first contact,
                                  rotated only by `board trust`, pipeline/boards/trust.py; history in R/trust/)
    R/bundles/<name>-v<N>-<id>/   bundles, content-addressed by manifest hash
    R/current -> bundles/...      the active bundle (a symlink, replaced with one rename)
    R/.staging/<tmp>/             uploads in progress
    R/.lock/owner.json            the ship or bench holding the board (pipeline/boards/lock.py)

Steps: verify on the host (signature + every file) -> pre-flight the board, read-only: python,
numpy, the runtime and its version, a writable path, free space (pipeline/boards/preflight.py;
on failure nothing is written) -> lock the board (fail fast if another ship
holds it; break a stale lock) and sweep staging dirs left by killed ships -> probe the board
(current bundle, trusted key) -> refuse another model (source model sha256 or target differ)
unless `replace`, and a downgrade unless forced -> upload into staging (one tar stream with
progress, pipeline/boards/upload.py; removed on any failure) -> verify on the board with the
runner -> move into bundles/ -> switch `current` -> smoke inference on the shipped sample (then
the optional post-switch command) -> on failure switch back to the previous bundle (or remove
`current` if there was none); on success prune bundles/ to the `keep` highest versions plus
current and previous -> release the lock (always).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shlex
import tempfile
import uuid
from pathlib import Path

from edgepipe.boards import bundle as bundle_mod
from edgepipe.boards import preflight
from edgepipe.boards.archive import unpack
from edgepipe.boards.lock import DEFAULT_TIMEOUT as DEFAULT_LOCK_TIMEOUT
from edgepipe.boards.lock import BoardLock
from edgepipe.boards.remote import Device, Remote, SSHOptions
from edgepipe.core.errors import BundleError, InputError, RemoteError

_PRUNE = r"""
import json, os, shutil, sys
r, k, p = sys.argv[1], int(sys.argv[2]), set(sys.argv[3:])

def version(n):
    m = os.path.join(r, n, "manifest.json")
    if not os.path.isfile(m):  # a FIFO there would block open() until the command timeout
        return -1
    try:
        with open(m) as f:
            v = json.load(f).get("bundle_version")
    except Exception:
        v = None
    return v if isinstance(v, int) and not isinstance(v, bool) else -1

ds = [n for n in os.listdir(r) if os.path.isdir(os.path.join(r, n)) and not os.path.islink(os.path.join(r, n))]
ds.sort(key=lambda n: (version(n), os.stat(os.path.join(r, n)).st_mtime, n), reverse=True)
gone = sorted(n for n in ds[k:] if n not in p)
for n in gone:
    shutil.rmtree(os.path.join(r, n))
print(json.dumps({"pruned": gone}))
"""
_SPECIAL = "==not a regular file"  # Board.probe: current/manifest.json exists but is a FIFO, device, directory
RUNNER = Path(__file__).resolve().with_name("device_runner.py")
MIN_AGREEMENT = 0.75  # smoke test: share of sample images whose board top-1 equals the host's
KEEP = 3  # bundles kept on the board after a successful ship (plus current and the previous one)


@contextlib.contextmanager
def verified_bundle(path: Path, pubkey: Path):
    """A bundle directory (or .tar archive, unpacked safely into a temporary dir), verified on the host."""
    path = Path(path)
    with contextlib.ExitStack() as stack:
        if path.is_file():
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgepipe-bundle-")))
            path = unpack(path, tmp)
        result = bundle_mod.verify(path, pubkey)
        yield path, result["manifest"]


def remote_dir_name(bundle_dir: Path, manifest: dict) -> str:
    digest = hashlib.sha256((bundle_dir / bundle_mod.MANIFEST).read_bytes()).hexdigest()[:12]
    return f"{manifest['name']}-v{manifest['bundle_version']}-{digest}"


class Board:
    """One board: probe, install (upload + verify on the board), switch, run the runner."""

    def __init__(self, device: Device, opts: SSHOptions, pubkey: Path | None = None):
        # pubkey: the host's signing key, needed to install; `board rollback` only switches and verifies
        # against the board's own trusted.pub
        self.device, self.remote = device, Remote(device, opts)
        self.pubkey = Path(pubkey) if pubkey is not None else None
        self.py = shlex.quote(device.python)
        self.progress = None  # progress(sent, total) during uploads (ship prints it on stderr)

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc) -> None:
        self.remote.close()  # the steps' shared SSH connection (boards/ssh_mux.py)

    def preflight(self, bundle_dir: Path, manifest: dict, dirname: str) -> dict:
        """Read-only checks before anything is written to the board (see pipeline/boards/preflight.py)."""
        need = preflight.upload_bytes(bundle_dir, RUNNER, self.pubkey)
        return preflight.check_board(self.remote, manifest, dirname, need)

    def probe(self, dirname: str) -> dict:
        d = self.device
        cmd = (f"mkdir -p {d.q('bundles')} {d.q('runner')} {d.q('.staging')} || exit 1; "
               f"echo '==link'; readlink {d.q('current')} 2>/dev/null; "
               # `test -f` first: a FIFO (or a device) there would block `cat` until the command timeout
               f"echo; echo '==manifest'; m={d.q('current', bundle_mod.MANIFEST)}; "
               f"if test -f \"$m\"; then cat \"$m\" 2>/dev/null; elif test -e \"$m\"; then echo '{_SPECIAL}'; fi; "
               f"echo; echo '==pub'; test -f {d.q('trusted.pub')} && cat {d.q('trusted.pub')} 2>/dev/null; "
               f"echo; echo '==exists'; test -d {d.q('bundles', dirname)} && echo yes; true")
        res = self.remote.run(cmd)
        if res.returncode != 0:
            raise RemoteError(f"{d.label}: expected a writable directory {d.path}. Received: {res.stderr.strip()}",
                              "remote path not writable")
        sections, key = {}, None
        for line in res.stdout.splitlines():
            if line.startswith("==") and line[2:] in ("link", "manifest", "pub", "exists"):
                key = line[2:]
                sections[key] = []
            elif key:
                sections[key].append(line)
        text = {k: "\n".join(v).strip() for k, v in sections.items()}
        current = None
        if text.get("manifest"):
            try:
                current = json.loads(text["manifest"]) if text["manifest"] != _SPECIAL else None
            except (ValueError, RecursionError):  # not JSON, or nested too deeply for the parser
                current = None
            if not isinstance(current, dict):  # also a list, a number, a FIFO or a device: not a manifest
                current = {"name": None, "bundle_version": None, "unreadable": True}
        return {"link": text.get("link") or None, "current": current, "pub": text.get("pub") or None,
                "exists": text.get("exists") == "yes"}

    def install(self, bundle_dir: Path, dirname: str, state: dict) -> dict:
        """Upload bundle + runner (+ trusted key on first contact) and verify on the board.

        A bundle already on the board (same manifest hash) is verified in place; if that copy was
        damaged there, a fresh copy is uploaded to staging, verified, and only then put in its place
        (`current` is never switched here). The result says so in "repaired"."""
        d = self.device
        ours = self.pubkey.read_bytes().decode().strip()
        if state["pub"] and state["pub"] != ours:
            from edgepipe.boards.signing import fingerprint

            raise RemoteError(f"{d.label}: expected the board to trust the key this bundle is signed with "
                              f"({fingerprint(ours.encode())}, {self.pubkey}). Received: {d.path}/trusted.pub is "
                              f"another key ({fingerprint(state['pub'].encode())}); the board keeps the key it "
                              "trusts until it is rotated: sign with that key, or rotate it with `edgepipe board trust "
                              "URL --new-pubkey NEW.pub --key OLD.key` (needs the trusted key's private half)",
                              "untrusted key")
        code, out = self._upload_and_verify(bundle_dir, dirname, with_pub=not state["pub"],
                                            with_bundle=not state["exists"])
        damaged = state["exists"] and (out.get("error") or {}).get("kind") == "verification"
        if damaged:  # the board's copy was damaged after it was installed: replace it with a verified one
            code, out = self._upload_and_verify(bundle_dir, dirname, with_pub=False, with_bundle=True)
        if code != 0 or not out.get("ok"):
            err = (out.get("error") or {}).get("message") or "no JSON from the runner"
            kind = (out.get("error") or {}).get("kind")
            status = "verification failed" if kind == "verification" else "install failed"
            raise RemoteError(f"{d.label}: board refused the bundle: {err}", status)
        if damaged:
            out["repaired"] = f"bundles/{dirname} on the board was damaged and was replaced by a verified copy"
        return out

    def _upload_and_verify(self, bundle_dir: Path, dirname: str, with_pub: bool, with_bundle: bool) -> tuple:
        d = self.device
        stage = f".staging/{uuid.uuid4().hex[:12]}"
        sources = [RUNNER] + ([self.pubkey] if with_pub else []) + ([bundle_dir] if with_bundle else [])
        final = d.q("bundles", dirname)
        staged = d.q(stage, bundle_dir.name) if with_bundle else final
        move_pub = "" if not with_pub else (f"{{ test -e {d.q('trusted.pub')} || "
                                            f"mv {d.q(stage, self.pubkey.name)} {d.q('trusted.pub')}; }} && ")
        # a damaged copy in bundles/ is moved into our staging dir (removed below) only once the new one verified
        aside = d.q(stage, ".replaced")
        move_bundle = "" if not with_bundle else (f" && {{ test ! -e {final} || mv {final} {aside}; }}"
                                                  f" && mv {staged} {final}")
        # the bundle dir's mtime says when it was last installed (`board list`; `prune` breaks version ties with it)
        cmd = (f"mv {d.q(stage, RUNNER.name)} {d.q('runner', RUNNER.name)} && {move_pub}"
               f"{self.py} {d.q('runner', RUNNER.name)} {staged} --verify-only --pubkey {d.q('trusted.pub')}"
               f"{move_bundle} && touch {final}; rc=$?; rm -rf {d.q(stage)}; exit $rc")
        try:
            mk = self.remote.run(f"mkdir -p {d.q(stage)}")
            if mk.returncode != 0:
                raise RemoteError(f"{d.label}: expected to create {d.path}/{stage}. Received: {mk.stderr.strip()}",
                                  "remote path not writable")
            self.remote.upload(sources, stage, progress=self.progress)
            res = self.remote.run(cmd)
        except BaseException:  # failed or interrupted upload: remove our own staging dir
            with contextlib.suppress(RemoteError):
                self.remote.run(f"rm -rf {d.q(stage)}", timeout=30)
            raise
        out = _runner_json(res)
        return res.returncode, out

    def runner(self, target: str, args: str, timeout: float) -> tuple[int, dict]:
        d = self.device
        res = self.remote.run(f"{self.py} {d.q('runner', RUNNER.name)} {target} {args} --pubkey {d.q('trusted.pub')}",
                              timeout=timeout)
        return res.returncode, _runner_json(res)

    def prune(self, keep: int, protect: list[str]) -> list[str]:
        """Remove the bundles beyond the `keep` highest bundle versions (manifest.json's bundle_version; install
        time breaks ties; an unreadable manifest counts lowest), never those in `protect`."""
        res = self.remote.run(f"{self.py} -c {shlex.quote(_PRUNE)} {self.device.q('bundles')} {int(keep)} "
                              + " ".join(shlex.quote(n) for n in protect))
        out = _runner_json(res)
        if res.returncode != 0 or "pruned" not in out:
            raise RemoteError(f"{self.device.label}: could not prune bundles/: {res.stderr.strip()[-300:]}",
                              "prune failed")
        return out["pruned"]

    def hook(self, command: str, dirname: str) -> dict:
        """Run the post-switch command on the board (in the install root, with EDGEPIPE_CURRENT and EDGEPIPE_BUNDLE
        set), bounded by --timeout. Its exit code and the tail of its output go into the report."""
        d = self.device
        res = self.remote.run(f"cd {d.q()} && EDGEPIPE_CURRENT={d.q('current')} "
                              f"EDGEPIPE_BUNDLE={d.q('bundles', dirname)} sh -c {shlex.quote(command)}")
        tail = (res.stderr.strip() or res.stdout.strip())[-300:]
        return {"command": command, "bundle": dirname, "exit_code": res.returncode,
                "message": f"exit {res.returncode}" + (f": {tail}" if tail else "")}

    def switch(self, target_rel: str | None) -> None:
        """Point `current` at bundles/<dir> with one rename (or remove it when target_rel is None)."""
        d = self.device
        if target_rel is None:
            cmd = f"rm -f {d.q('current')}"
        else:
            script = ("import os,sys; t,new,cur=sys.argv[1:4]; "
                      "os.path.lexists(new) and os.remove(new); os.symlink(t,new); os.replace(new,cur)")
            cmd = (f"{self.py} -c {shlex.quote(script)} {shlex.quote(target_rel)} {d.q('.current.new')} "
                   f"{d.q('current')}")
        res = self.remote.run(cmd)
        if res.returncode != 0:
            raise RemoteError(f"{d.label}: could not switch current: {res.stderr.strip()[-300:]}", "switch failed")


def ship(bundle_path: Path, url: str, opts: SSHOptions, pubkey: Path, force: bool = False,
         python: str | None = None, smoke_runs: int = 3, min_agreement: float = MIN_AGREEMENT,
         keep: int = KEEP, lock_timeout: float = DEFAULT_LOCK_TIMEOUT, replace: bool = False,
         post_switch: str | None = None, progress=None) -> dict:
    """`replace`: allow a bundle of another model than the one `current` holds (one model per install path).
    `post_switch`: a shell command run on the board after a good smoke test (see README "After the switch");
    its failure is handled like a failed smoke test. `progress(sent, total)`: called during the upload."""
    device = Device.parse(url, python)
    require_pubkey(pubkey)
    if keep < 1:
        raise InputError(f"--keep: expected at least 1 bundle to keep. Received: {keep}")
    if lock_timeout <= opts.command_timeout:
        raise InputError(f"--lock-timeout: expected more than --timeout ({opts.command_timeout:.0f} s: the lock "
                         f"is refreshed between remote steps). Received: {lock_timeout:.0f}")
    if post_switch is not None and not post_switch.strip():
        raise InputError("--post-switch: expected a shell command to run on the board. Received: an empty string")
    policy = {"force": force, "replace": replace, "smoke_runs": smoke_runs, "min_agreement": min_agreement,
              "keep": keep, "post_switch": post_switch}
    with verified_bundle(bundle_path, pubkey) as (bdir, manifest):
        dirname = remote_dir_name(bdir, manifest)
        with Board(device, opts, pubkey) as board:
            board.progress = progress
            ready = board.preflight(bdir, manifest, dirname)
            with BoardLock(board.remote, device.python, "ship", lock_timeout) as lock:
                return _ship_locked(board, lock, bdir, manifest, dirname, policy, ready)


def model_identity(manifest: dict) -> dict:
    """What identifies a bundle's model: the target it was built for, the source model's file sha256 and its
    content key (`source_model_key`; absent from bundles made before it was recorded)."""
    return {"target": manifest.get("target"), "source_model_sha256": manifest.get("source_model_sha256"),
            "source_model_key": manifest.get("source_model_key")}


def same_model(a: dict, b: dict) -> bool:
    """Two bundles of one model: the same target and the same source model, by its content key when both
    bundles have one (the same .keras model saved again, whose file sha256 changes), else by its file sha256."""
    if a.get("target") != b.get("target"):
        return False
    if a.get("source_model_key") and b.get("source_model_key"):
        return a["source_model_key"] == b["source_model_key"]
    return a.get("source_model_sha256") == b.get("source_model_sha256")


def describe_model(manifest: dict) -> str:
    src = manifest.get("source_model_sha256")
    return (f"{manifest.get('name')} v{manifest.get('bundle_version')} (target {manifest.get('target')}, "
            f"source model sha256 {src[:16] + '...' if isinstance(src, str) else src})")


def _check_current(device: Device, cur: dict, link: str | None, manifest: dict, policy: dict) -> dict | None:
    """Refusals before anything is uploaded: an unreadable current, another model, a downgrade.
    Returns what --replace replaces (or None)."""
    if cur.get("unreadable") and not policy["force"]:
        raise RemoteError(f"{device.label}: expected a readable manifest of the current bundle "
                          f"({link}). Received: unreadable JSON (use --force to replace it)",
                          "current unreadable")
    other = bool(cur) and not cur.get("unreadable") and not same_model(cur, manifest)
    if other and not policy["replace"]:
        raise BundleError(f"{device.label}: expected a bundle of the model installed at {device.path} (one model per "
                          f"install path): current is {describe_model(cur)}. Received: {describe_model(manifest)}. "
                          "Fix: ship it to another path, or pass --replace to make it this path's model")
    if other:
        return {"model": describe_model(cur), "link": link, **model_identity(cur)}
    if cur and cur.get("name") == manifest["name"] and not policy["force"]:
        if not isinstance(cur.get("bundle_version"), int) or manifest["bundle_version"] <= cur["bundle_version"]:
            raise BundleError(f"{device.label}: expected a bundle version newer than the board's current "
                              f"{cur.get('name')} v{cur.get('bundle_version')}. Received: v"
                              f"{manifest['bundle_version']} (a downgrade or reinstall; use --force)")
    return None


def _ship_locked(board: Board, lock: BoardLock, bdir: Path, manifest: dict, dirname: str, policy: dict,
                 ready: dict) -> dict:
    device, opts = board.device, board.remote.opts
    state = board.probe(dirname)
    cur = state["current"] or {}
    report = {"device": device.label, "bundle": dirname, "preflight": ready, "previous": state["link"],
              "previous_version": cur.get("bundle_version"), "lock_broken": lock.acquired.get("broken"),
              "swept_staging": lock.acquired.get("swept", [])}
    replaced = _check_current(device, cur, state["link"], manifest, policy)
    if replaced:
        report["replaced"] = replaced
    installed = board.install(bdir, dirname, state)
    report["verify"] = installed.get("verification")
    if installed.get("repaired"):
        report["repaired"] = installed["repaired"]
    lock.refresh()
    new_rel = f"bundles/{dirname}"
    board.switch(new_rel)
    report["switched"] = True
    try:
        code, smoke = board.runner(device.q("current"), f"--eval --runs {policy['smoke_runs']} --warmup 1",
                                   timeout=opts.command_timeout)
        problem = _smoke_problem(code, smoke, policy["min_agreement"])
        if problem is None and policy["post_switch"]:
            report["post_switch"] = board.hook(policy["post_switch"], dirname)
            if report["post_switch"]["exit_code"] != 0:
                problem = f"post-switch command failed: {report['post_switch']['message']}"
    except RemoteError as err:
        smoke, problem = {}, f"{err.status}: {err}"
    except KeyboardInterrupt:  # Ctrl-C before the smoke test said ok: the board goes back to what it had
        if state["link"] != new_rel:
            with contextlib.suppress(RemoteError):
                board.switch(state["link"])
        raise
    report["smoke"] = smoke
    if problem is None:
        report["status"] = "ok"
        prev = (state["link"] or "").rsplit("/", 1)[-1]
        try:  # the ship is done: a failed prune is reported, not fatal
            lock.refresh()
            report["pruned"] = board.prune(policy["keep"], [dirname] + ([prev] if prev else []))
        except RemoteError as err:
            report.update(pruned=[], prune_error=str(err))
        return report
    prev = state["link"] if state["link"] != new_rel else None
    board.switch(prev)
    if prev != new_rel:
        board.remote.run(f"rm -rf {device.q('bundles', dirname)}")
    if prev and "post_switch" in report:  # the application goes back to the restored bundle too
        with contextlib.suppress(RemoteError):
            report["post_switch_after_rollback"] = board.hook(policy["post_switch"], prev.rsplit("/", 1)[-1])
    report.update(status="rolled back" if prev else "removed", rolled_back_to=prev, reason=problem)
    raise ShipFailed(f"{device.label}: smoke test of {dirname} failed ({problem}); "
                     + (f"rolled back to {prev}" if prev else "no previous bundle: current removed"), report)


class ShipFailed(RemoteError):
    def __init__(self, message: str, report: dict):
        super().__init__(message, report.get("status", "failed"))
        self.report = report


def require_pubkey(pubkey: Path) -> None:
    from edgepipe.boards.signing import check_public_key

    check_public_key(pubkey)


def _smoke_problem(code: int, out: dict, min_agreement: float) -> str | None:
    if code != 0 or not out.get("ok"):
        return (out.get("error") or {}).get("message") or f"runner exit code {code}"
    agreement = (out.get("eval") or {}).get("agreement_with_host")
    if agreement is not None and agreement < min_agreement:
        return f"board top-1 agrees with the host on {agreement:.2f} of the sample, expected >= {min_agreement:.2f}"
    return None


def _runner_json(res) -> dict:
    from edgepipe.boards.device_runner import parse_output

    out = parse_output(res.stdout)
    if out is not None:
        return out
    return {"ok": False, "error": {"kind": "no output", "message": (res.stderr.strip() or "no JSON from the runner")
                                   [-500:]}}
