"""`edgepipe board trust URL --new-pubkey NEW.pub`: rotate the signing key a board trusts.

A board trusts one Ed25519 public key, R/trusted.pub (installed by the first ship). It is
replaced only through a rotation statement signed by the key it trusts now:

1. the host loads the current private key (`--key`, default: the keygen key) and checks that its
   public half IS the board's trusted.pub (else refused: you cannot rotate a key you do not hold);
2. it writes the statement {old_pubkey, new_pubkey, their fingerprints, time} and signs its bytes
   with the old private key;
3. holding the board lock, it uploads statement, signature and the new key into R/.staging/, and
   a small script on the board checks that the statement names the board's current trusted.pub
   and the uploaded key, verifies the signature against the current trusted.pub (when the board
   has the `cryptography` package; the host has checked it either way, and the result says which),
   keeps the statement, its signature and the old key in R/trust/ (the audit trail), and replaces
   trusted.pub with one rename.

From then on the board refuses bundles signed by the old key: `ship`, `bench` and `board rollback`
to a bundle signed with it. SSH access to the board can always replace trusted.pub by hand: the
statement proves that whoever rotated through edgepipe held the old private key, it does not
stop root on the board.
"""

from __future__ import annotations

import json
import shlex
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

from edgepipe.boards.lock import DEFAULT_TIMEOUT as DEFAULT_LOCK_TIMEOUT
from edgepipe.boards.lock import BoardLock
from edgepipe.boards.remote import Device, Remote, SSHOptions
from edgepipe.core.errors import BundleError, InputError, RemoteError

STATEMENT, STATEMENT_SIG, NEW_PUB = "rotation.json", "rotation.sig", "new.pub"

_SCRIPT = r"""
import base64, json, os, sys, time
root, stage = sys.argv[1], sys.argv[2]

def rd(p):
    with open(p, "rb") as f:
        return f.read()

def refuse(msg):
    sys.stdout.write(json.dumps({"ok": False, "error": msg}) + "\n")
    sys.exit(2)

stmt = rd(os.path.join(stage, "rotation.json"))
sig = json.loads(rd(os.path.join(stage, "rotation.sig")).decode("utf-8"))
new = rd(os.path.join(stage, "new.pub"))
try:
    cur = rd(os.path.join(root, "trusted.pub"))
except (IOError, OSError):
    refuse("expected a trusted.pub in %s. Received: none (ship once first)" % root)
st = json.loads(stmt.decode("utf-8"))
if st.get("old_pubkey", "").encode("utf-8").strip() != cur.strip():
    refuse("expected the statement to name the board's trusted.pub. Received: another old key")
if st.get("new_pubkey", "").encode("utf-8").strip() != new.strip():
    refuse("expected the uploaded key to be the statement's new key. Received: another key")
try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
except ImportError:
    checked = False
else:
    try:
        load_pem_public_key(cur).verify(base64.b64decode(sig["signature"]), stmt)
    except InvalidSignature:
        refuse("expected a rotation statement signed by the board's trusted key. Received: a bad signature")
    checked = True
trust = os.path.join(root, "trust")
if not os.path.isdir(trust):
    os.makedirs(trust)
stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
for name, data in (("rotation-%s.json" % stamp, stmt), ("rotation-%s.sig" % stamp, json.dumps(sig).encode("utf-8")),
                   ("old-%s.pub" % stamp, cur)):
    with open(os.path.join(trust, name), "wb") as f:
        f.write(data)
tmp = os.path.join(root, ".trusted.pub.new")
with open(tmp, "wb") as f:
    f.write(new)
os.replace(tmp, os.path.join(root, "trusted.pub"))
sys.stdout.write(json.dumps({"ok": True, "checked_on_board": checked, "kept": "trust/rotation-%s.json" % stamp}) + "\n")
"""


def statement(old_pub: bytes, new_pub: bytes) -> bytes:
    from edgepipe.boards.signing import fingerprint

    return json.dumps({"edgepipe_key_rotation": 1, "old_pubkey": old_pub.decode().strip(),
                       "new_pubkey": new_pub.decode().strip(), "old_fingerprint": fingerprint(old_pub),
                       "new_fingerprint": fingerprint(new_pub),
                       "created": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                      indent=2, sort_keys=True).encode()


def rotate(url: str, opts: SSHOptions, key: Path, new_pubkey: Path, python: str | None = None,
           lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> dict:
    from edgepipe.boards.signing import check_public_key, fingerprint, load_private, public_pem, sign_bytes

    device = Device.parse(url, python)
    check_public_key(new_pubkey)
    old_pub = public_pem(load_private(key))
    new_pub = Path(new_pubkey).read_bytes()
    old_fp, new_fp = fingerprint(old_pub), fingerprint(new_pub)
    report = {"device": device.label, "old_fingerprint": old_fp, "new_fingerprint": new_fp}
    if old_fp == new_fp:
        raise InputError(f"--new-pubkey: expected a key other than the one the board would be rotated from "
                         f"({old_fp}). Received: the same key")
    with Remote(device, opts) as remote, BoardLock(remote, device.python, "trust", lock_timeout):
        from edgepipe.boards.board_ops import read_board

        board_pub = read_board(remote)["trusted_pub"]
        if board_pub is None:
            raise RemoteError(f"{device.label}: expected a trusted.pub in {device.path} to rotate from. Received: "
                              "none; the first `edgepipe ship` installs the key it signs with", "not installed")
        board_fp = fingerprint(board_pub.encode())
        report["board_fingerprint"] = board_fp
        if board_fp != old_fp:
            raise BundleError(f"{device.label}: expected --key to be the private half of the board's trusted key "
                              f"({board_fp}). Received: the private key of {old_fp} ({key}); only the holder of the "
                              "trusted key can rotate it")
        text = statement(board_pub.encode(), new_pub)
        with tempfile.TemporaryDirectory(prefix="edgepipe-trust-") as tmp:
            files = [Path(tmp) / STATEMENT, Path(tmp) / STATEMENT_SIG, Path(tmp) / NEW_PUB]
            files[0].write_bytes(text)
            files[1].write_text(json.dumps(sign_bytes(text, key)))
            files[2].write_bytes(new_pub)
            out = install_statement(remote, files)
        if not out.get("ok"):
            raise BundleError(f"{device.label}: the board refused the rotation: {out.get('error')}; trusted.pub "
                              "is unchanged")
    report.update(status="ok", rotated=True, checked_on_board=out["checked_on_board"], statement=out["kept"])
    return report


def install_statement(remote: Remote, files: list[Path]) -> dict:
    """Upload [statement, signature, new key] to staging and run the board-side check and rename (staging removed)."""
    from edgepipe.boards.device_runner import parse_output

    d = remote.device
    stage = f".staging/{uuid.uuid4().hex[:12]}"
    try:
        mk = remote.run(f"mkdir -p {d.q(stage)}")
        if mk.returncode != 0:
            raise RemoteError(f"{d.label}: expected to create {d.path}/{stage}. Received: {mk.stderr.strip()}",
                              "remote path not writable")
        remote.upload(files, stage)
        res = remote.run(f"{shlex.quote(d.python)} -c {shlex.quote(_SCRIPT)} {d.q()} {d.q(stage)}")
    finally:
        try:
            remote.run(f"rm -rf {d.q(stage)}", timeout=30)
        except RemoteError:
            pass
    out = parse_output(res.stdout)
    if out is None:
        raise RemoteError(f"{d.label}: key rotation script failed (exit {res.returncode}): "
                          f"{res.stderr.strip()[-300:]}; trusted.pub is unchanged", "rotation failed")
    return out
