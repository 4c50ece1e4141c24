"""`edgepipe keygen | bundle | verify | ship | board status|list|rollback|trust`: signed bundles and boards over SSH."""

from __future__ import annotations

from pathlib import Path

import typer

from edgepipe.cli.common import SSH_OPTIONS, Group, app, fail, interrupted, json_out, refuse_empty, ssh_options
from edgepipe.core.errors import EdgepipeError

JSON = "machine-readable output on stdout (errors too)"


def plain(value) -> str:
    from edgepipe.reports.escape import terminal

    return terminal(value, markup=False)


def done(res: dict) -> None:
    """--json success: the result as one object, with ok and exit_code like every other outcome."""
    json_out({**res, "ok": True, "exit_code": 0})


def refused(err: EdgepipeError, as_json: bool, **extra) -> None:
    """A refusal or failure: with --json one object (ok false, status, error, exit_code) on stdout; then exit."""
    if as_json:
        json_out({**getattr(err, "report", {}), "ok": False, **extra,
                  "status": getattr(err, "status", None) or _status(err),
                  "error": str(err), "type": type(err).__name__, "exit_code": err.exit_code})
    fail(err)


@app.command()
def keygen(
    out: str | None = typer.Option(None, "-o", "--output", "--out", metavar="PATH",  # str: '' is not '.'
                                   help="key directory (default: $EDGEPIPE_KEYS or ~/.config/edgepipe/keys)"),
    force: bool = typer.Option(False, "--force", help="replace an existing key pair"),
    as_json: bool = typer.Option(False, "--json", help=JSON),
) -> None:
    """Create the Ed25519 key pair that signs bundles (edgepipe.key, edgepipe.pub)."""
    from edgepipe.boards.signing import default_key_dir
    from edgepipe.boards.signing import keygen as make_keys

    try:
        refuse_empty("--out", out, "a key directory (or no --out: $EDGEPIPE_KEYS or ~/.config/edgepipe/keys)")
        priv, pub = make_keys(Path(out) if out is not None else default_key_dir(for_writing=True), force)
    except EdgepipeError as err:
        refused(err, as_json)
    from edgepipe.boards.signing import fingerprint

    fp = fingerprint(pub.read_bytes())
    if as_json:
        done({"private_key": str(priv), "public_key": str(pub), "fingerprint": fp})
    else:
        typer.echo(f"private key: {plain(priv)}\npublic key:  {plain(pub)}\nfingerprint: {fp}")


@app.command("bundle")
def bundle_cmd(
    artifact: Path = typer.Argument(..., help="a published artifact dir: <output>/artifacts/<target>-<precision>"),
    out: str = typer.Option(..., "-o", "--output", "--out", metavar="PATH",  # str: '' is not '.'
                            help="bundle store; the bundle goes to OUTPUT/<target>-<precision>-v<N>"),
    key: Path | None = typer.Option(None, help="Ed25519 private key (default: the edgepipe keygen key)"),
    version: int | None = typer.Option(None, min=1, help="bundle version (default: newest in OUT + 1)"),
    samples: str | None = typer.Option(None,
                                  help="labeled images for the on-board sample (default: the run's test split)"),
    per_class: int = typer.Option(2, min=1, help="sample images per class"),
    tar: bool = typer.Option(False, "--tar", help="also write OUTPUT/<bundle>.tar"),
    as_json: bool = typer.Option(False, "--json", help=JSON),
) -> None:
    """Bundle a published artifact: files + manifest (sha256, provenance, metrics, version) + signature."""
    from edgepipe.boards.archive import pack
    from edgepipe.boards.bundle import build_bundle
    from edgepipe.boards.signing import PRIVATE_NAME, default_key_dir

    try:
        refuse_empty("--out", out, "a bundle store folder (new or existing)")
        path = build_bundle(artifact, Path(out), key or default_key_dir() / PRIVATE_NAME, version, samples, per_class)
        archive = pack(path, path.with_name(path.name + ".tar")) if tar else None
    except EdgepipeError as err:
        refused(err, as_json)
    if as_json:
        done({"bundle": str(path), "tar": str(archive) if archive else None})
        return
    if archive:
        typer.echo(plain(archive))
    typer.echo(plain(path))


@app.command("verify")
def verify_cmd(
    bundle: Path = typer.Argument(..., help="bundle directory or .tar"),
    pubkey: Path | None = typer.Option(None, help="trusted public key (default: the edgepipe keygen key)"),
    as_json: bool = typer.Option(False, "--json", help=JSON),
) -> None:
    """Verify a bundle's signature and every file against its manifest (exit 2 if refused)."""
    from edgepipe.boards.ship import require_pubkey, verified_bundle
    from edgepipe.boards.signing import PUBLIC_NAME, default_key_dir

    pubkey = pubkey or default_key_dir() / PUBLIC_NAME
    try:
        require_pubkey(pubkey)
        with verified_bundle(bundle, pubkey) as (_, manifest):
            result = {"ok": True, "name": manifest["name"], "bundle_version": manifest["bundle_version"],
                      "files": len(manifest["files"]), "pubkey": str(pubkey)}
    except EdgepipeError as err:
        refused(err, as_json)
    if as_json:
        done(result)
    else:
        typer.echo(f"ok: {plain(result['name'])} v{result['bundle_version']}, {result['files']} files, "
                   f"signature valid ({plain(pubkey)})")


@app.command()
def ship(
    bundle: Path = typer.Argument(..., help="bundle directory or .tar"),
    to: str = typer.Option(..., "--to", help="ssh://[user@]host[:port]/path[?python=PYTHON]"),
    identity: Path | None = SSH_OPTIONS["identity"],
    known_hosts: Path | None = SSH_OPTIONS["known_hosts"],
    pubkey: Path | None = typer.Option(None, help="trusted signing public key (default: the edgepipe keygen key)"),
    remote_python: str | None = SSH_OPTIONS["remote_python"],
    force: bool = typer.Option(False, "--force", help="allow a downgrade or a reinstall of the same version"),
    connect_timeout: int = SSH_OPTIONS["connect_timeout"],
    timeout: float = SSH_OPTIONS["timeout"],
    retries: int = SSH_OPTIONS["retries"],
    keep: int = typer.Option(3, min=1, help="after a successful ship, keep the bundles with the KEEP highest versions "
                                            "on the board (current and the previous one are always kept)"),
    replace: bool = typer.Option(False, "--replace", help="allow a bundle of another model (source model or target) "
                                                          "than the one `current` holds: one model per path"),
    post_switch: str | None = typer.Option(None, "--post-switch", help="shell command run on the board after the "
                                           "switch and a good smoke test (e.g. restart the application); if it "
                                           "fails, `current` is switched back"),
    upload_timeout: float | None = typer.Option(None, "--upload-timeout", min=1, help="seconds the upload may take "
                                                "(default: --timeout + the bundle's size at 256 KiB/s)"),
    lock_timeout: float = SSH_OPTIONS["lock_timeout"],
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout for every outcome (success, "
                                                       "refusal, remote failure, Ctrl-C), with its exit_code"),
) -> None:
    """Upload a bundle to a board, verify it there, switch `current` atomically, smoke-test, roll back on failure.
    The board is checked first (python, numpy, runtime, writable path, free space): nothing is written to a board
    that is not ready. One ship per board at a time (PATH/.lock; exit 3 naming the holder); old bundles are pruned
    (--keep)."""
    from dataclasses import replace as replace_opts

    from edgepipe.boards.ship import ShipFailed
    from edgepipe.boards.ship import ship as do_ship
    from edgepipe.boards.signing import PUBLIC_NAME, default_key_dir

    def run(url: str) -> dict:
        try:
            opts = replace_opts(ssh_options(identity, known_hosts, connect_timeout, timeout, retries),
                                upload_timeout=upload_timeout)
            return do_ship(bundle, url, opts, pubkey or default_key_dir() / PUBLIC_NAME, force, remote_python,
                           keep=keep, lock_timeout=lock_timeout, replace=replace, post_switch=post_switch,
                           progress=upload_progress())
        except ShipFailed as err:  # the report (rolled back or removed) is printed either way
            json_out({**err.report, "ok": False, "error": str(err), "exit_code": err.exit_code})
            fail(err)

    res = _board_call(run, to, as_json, "the board's lock was released, an unfinished upload removed, and "
                                        "`current` left as it was (or switched back); run ship again")
    json_out({**res, "ok": True, "exit_code": 0})


def upload_progress():
    """progress(sent, total) for uploads: a line on stderr at most every 2 s and at each tenth, and at the end
    (never on stdout, which holds --json)."""
    import time

    from edgepipe.boards.upload import mib
    from edgepipe.core.progress import stderr

    last = {"t": 0.0, "tenth": -1}

    def show(sent: int, total: int) -> None:
        tenth = 10 * sent // total if total else 10
        now = time.monotonic()
        if sent < total and tenth == last["tenth"] and now - last["t"] < 2:
            return
        last.update(t=now, tenth=tenth)
        pct = 100 * sent // total if total else 100
        stderr.print(f"upload: {mib(sent)} of {mib(total)} ({pct}%)", highlight=False, markup=False, soft_wrap=True)

    return show


def _status(err: EdgepipeError) -> str:
    from edgepipe.core.errors import BundleError

    return "refused" if isinstance(err, BundleError) else "bad input"


board_app = typer.Typer(cls=Group, no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]},
                        help="Look at a board's bundles (status, list) and roll `current` back, over SSH.")
app.add_typer(board_app, name="board")

URL = typer.Argument(..., help="ssh://[user@]host[:port]/path[?python=PYTHON] (the path given to ship --to)")
BOARD_JSON = "one JSON object on stdout for every outcome (success, refusal, remote failure), with its exit_code"


def _board_call(fn, url: str, as_json: bool, what: str, **kw) -> dict:
    """Run one board operation; every failure prints (with --json: one JSON object) and exits."""
    from edgepipe.core.signals import Terminated

    try:
        return fn(url, **kw)
    except EdgepipeError as err:
        refused(err, as_json, device=url)
    except KeyboardInterrupt as err:
        code = 143 if isinstance(err, Terminated) else 130
        if as_json:
            json_out({"ok": False, "device": url, "status": "terminated" if code == 143 else "interrupted",
                      "error": what, "exit_code": code})
        interrupted(err, what)


@board_app.command("status")
def board_status(
    url: str = URL,
    identity: Path | None = SSH_OPTIONS["identity"],
    known_hosts: Path | None = SSH_OPTIONS["known_hosts"],
    remote_python: str | None = SSH_OPTIONS["remote_python"],
    connect_timeout: int = SSH_OPTIONS["connect_timeout"],
    timeout: float = SSH_OPTIONS["timeout"],
    retries: int = SSH_OPTIONS["retries"],
    as_json: bool = typer.Option(False, "--json", help=BOARD_JSON),
) -> None:
    """The board's current bundle (name, version, model and manifest sha256), the previous one (the rollback
    target), the trusted key's fingerprint and the lock holder. Read-only."""
    from edgepipe.boards.board_ops import describe_status, status

    res = _board_call(status, url, as_json, "nothing was changed on the board",
                      opts=ssh_options(identity, known_hosts, connect_timeout, timeout, retries),
                      python=remote_python)
    if as_json:
        json_out({**res, "ok": True, "exit_code": 0})
    else:
        typer.echo(plain(describe_status(res)))


@board_app.command("list")
def board_list(
    url: str = URL,
    identity: Path | None = SSH_OPTIONS["identity"],
    known_hosts: Path | None = SSH_OPTIONS["known_hosts"],
    remote_python: str | None = SSH_OPTIONS["remote_python"],
    connect_timeout: int = SSH_OPTIONS["connect_timeout"],
    timeout: float = SSH_OPTIONS["timeout"],
    retries: int = SSH_OPTIONS["retries"],
    as_json: bool = typer.Option(False, "--json", help=BOARD_JSON),
) -> None:
    """Every bundle in PATH/bundles, newest installed first: name, version, installed time, which is current.
    Read-only."""
    from edgepipe.boards.board_ops import list_bundles

    res = _board_call(list_bundles, url, as_json, "nothing was changed on the board",
                      opts=ssh_options(identity, known_hosts, connect_timeout, timeout, retries),
                      python=remote_python)
    if as_json:
        json_out({**res, "ok": True, "exit_code": 0})
        return
    rows = [("", "BUNDLE", "NAME", "VERSION", "INSTALLED")]
    rows += [("*" if b["current"] else "", b["dir"], str(b.get("name", "?")), str(b.get("version", "?")),
              b["installed"] + (f" (unreadable: {b['unreadable']})" if b.get("unreadable") else ""))
             for b in res["bundles"]]
    widths = [max(len(plain(r[i])) for r in rows) for i in range(4)]
    typer.echo(plain(res["device"]) + ("" if res["bundles"] else ": no bundles"))
    for r in rows if res["bundles"] else []:
        typer.echo("  ".join(plain(c).ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + plain(r[4]))


@board_app.command("rollback")
def board_rollback(
    url: str = URL,
    to: str | None = typer.Option(None, "--to", help="bundle directory in PATH/bundles (default: the newest "
                                                     "installed bundle other than current)"),
    identity: Path | None = SSH_OPTIONS["identity"],
    known_hosts: Path | None = SSH_OPTIONS["known_hosts"],
    remote_python: str | None = SSH_OPTIONS["remote_python"],
    connect_timeout: int = SSH_OPTIONS["connect_timeout"],
    timeout: float = SSH_OPTIONS["timeout"],
    retries: int = SSH_OPTIONS["retries"],
    lock_timeout: float = SSH_OPTIONS["lock_timeout"],
    as_json: bool = typer.Option(False, "--json", help=BOARD_JSON),
) -> None:
    """Switch `current` back to the previous bundle (or --to BUNDLE_DIR) with one rename, after verifying it on
    the board against trusted.pub. Holds the board lock; refuses (nothing changed) when there is nothing to roll
    back to, the bundle is unknown, or it fails verification."""
    from edgepipe.boards.board_ops import rollback

    res = _board_call(rollback, url, as_json, "the board's lock was released; `current` was switched with one "
                                              "rename or not at all: check with edgepipe board status",
                      opts=ssh_options(identity, known_hosts, connect_timeout, timeout, retries), to=to,
                      python=remote_python, lock_timeout=lock_timeout)
    if as_json:
        json_out({**res, "ok": True, "exit_code": 0})
    else:
        sig = (res.get("verify") or {}).get("signature")
        typer.echo(f"rolled back: current -> bundles/{plain(res['bundle'])} (was {plain(res['previous'])}); "
                   f"verified on the board (signature: {plain(sig)})")


@board_app.command("trust")
def board_trust(
    url: str = URL,
    new_pubkey: Path = typer.Option(..., "--new-pubkey", help="the public key the board is to trust from now on "
                                                              "(edgepipe keygen -o NEWDIR)"),
    key: Path | None = typer.Option(None, "--key", help="private half of the key the board trusts now, to sign the "
                                                        "rotation (default: the edgepipe keygen key)"),
    identity: Path | None = SSH_OPTIONS["identity"],
    known_hosts: Path | None = SSH_OPTIONS["known_hosts"],
    remote_python: str | None = SSH_OPTIONS["remote_python"],
    connect_timeout: int = SSH_OPTIONS["connect_timeout"],
    timeout: float = SSH_OPTIONS["timeout"],
    retries: int = SSH_OPTIONS["retries"],
    lock_timeout: float = SSH_OPTIONS["lock_timeout"],
    as_json: bool = typer.Option(False, "--json", help=BOARD_JSON),
) -> None:
    """Rotate the signing key the board trusts (PATH/trusted.pub): only with a rotation statement signed by the
    key it trusts now (--key). Prints the old and new fingerprints; the statement and the old key are kept in
    PATH/trust/. Afterwards the board refuses bundles signed by the old key."""
    from edgepipe.boards.signing import PRIVATE_NAME, default_key_dir
    from edgepipe.boards.trust import rotate

    res = _board_call(rotate, url, as_json, "the board's lock was released; trusted.pub was replaced with one "
                                            "rename or not at all: check with edgepipe board status",
                      opts=ssh_options(identity, known_hosts, connect_timeout, timeout, retries),
                      key=key or default_key_dir() / PRIVATE_NAME, new_pubkey=new_pubkey, python=remote_python,
                      lock_timeout=lock_timeout)
    if as_json:
        done(res)
    else:
        where = ("on the board and on this host" if res["checked_on_board"]
                 else "on this host (no cryptography package on the board)")
        typer.echo(f"trusted key rotated: {res['old_fingerprint']} -> {res['new_fingerprint']}\n"
                   f"statement signed by the old key, checked {where}, kept in {plain(res['statement'])}\n"
                   "sign new bundles with the new key: bundles signed with the old one are now refused on this board")
