"""Ed25519 keys and signatures for bundles (`cryptography`).

What is signed is the exact bytes of a bundle's manifest.json; the manifest lists every other
file's sha256 and size, so the signature covers the whole bundle. The signature lives in
manifest.sig inside the bundle directory and is not itself in the signed file set.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from edgepipe.core import safeio
from edgepipe.core.errors import BundleError, InputError

PRIVATE_NAME = "edgepipe.key"
PUBLIC_NAME = "edgepipe.pub"


def default_key_dir(for_writing: bool = False) -> Path:
    """$EDGEPIPE_KEYS, else ~/.config/edgepipe/keys. `for_writing` (keygen): the home folder must exist; keygen makes
    the folders below it, never a home directory (HOME=/nonexistent/x made that whole chain)."""
    if os.environ.get("EDGEPIPE_KEYS"):
        return Path(os.environ["EDGEPIPE_KEYS"])
    home = Path.home()
    if for_writing and not home.is_dir():
        from edgepipe.core.errors import expected_received

        raise InputError(expected_received("keygen: the default key directory ~/.config/edgepipe/keys",
                                           "a home folder that exists", f"HOME {str(home)!r} is not a folder; set "
                                           "EDGEPIPE_KEYS or pass --out"))
    return home / ".config" / "edgepipe" / "keys"


def keygen(directory: Path, force: bool = False) -> tuple[Path, Path]:
    """Write a new key pair: edgepipe.key (PKCS8 PEM, mode 0600) and edgepipe.pub (PEM).

    Refused (InputError, nothing written): a path that is a file or a dangling link, an existing key
    without `force` (naming the file that exists). Both keys are written to temporaries first and
    renamed only when both are written, so a failed write never leaves a key without its public half
    (or an old public key beside a new private one); an OSError is an OutputWriteError, not a traceback.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgepipe.core.errors import OutputWriteError, expected_received

    directory = Path(directory)
    priv_path, pub_path = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    label = f"keygen: key directory {str(directory)!r}"
    if directory.is_symlink() and not directory.exists():
        raise InputError(expected_received(label, "a folder", "a dangling symbolic link"))
    if directory.exists() and not directory.is_dir():
        raise InputError(expected_received(label, "a folder", "an existing file"))
    existing = [p.name for p in (priv_path, pub_path) if p.exists() or p.is_symlink()]
    odd = [p.name for p in (priv_path, pub_path)
           if (p.exists() or p.is_symlink()) and (p.is_symlink() or not p.is_file())]
    if odd:  # a folder or link where a key goes: refused before anything is renamed over the other key
        raise InputError(expected_received(label, f"{PRIVATE_NAME} and {PUBLIC_NAME} as regular files or absent",
                                           f"{' and '.join(odd)} not a regular file"))
    if not force and existing:
        raise InputError(f"keygen: expected no key in {str(directory)!r}. Received: {' and '.join(existing)} "
                         f"exist{'s' if len(existing) == 1 else ''} (use --force to replace them; bundles signed "
                         "with the old key will no longer verify)")
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    temps: list[Path] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for path, data, mode in ((priv_path, priv, 0o600), (pub_path, pub, 0o644)):
            temps.append(_write_temp(path, data, mode))
        for tmp, path in zip(temps, (priv_path, pub_path), strict=True):
            os.replace(tmp, path)
    except OSError as err:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise OutputWriteError(expected_received(label, "a writable folder",
                                                 f"{err.strerror or err} ({err.filename or directory})")) from None
    return priv_path, pub_path


def load_private(path: Path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(safeio.read_bytes(path, "signing key", 64 * safeio.KiB), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise InputError(f"signing key {str(path)!r}: expected an unencrypted Ed25519 PEM private key "
                         f"(edgepipe keygen). Received: {err}") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"signing key {str(path)!r}: expected an Ed25519 key. Received: {type(key).__name__}")
    return key


def public_pem(private_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(pub_pem: bytes) -> str:
    return hashlib.sha256(pub_pem.strip()).hexdigest()[:16]


def fingerprint(pub_pem: bytes) -> str:
    """`SHA256:<base64>` of the raw Ed25519 public key (the style of ssh-keygen -l), or of the PEM text
    when it is not an Ed25519 key."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_public_key(pub_pem.strip())
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    except (ValueError, TypeError):
        raw = pub_pem.strip()
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode("ascii").rstrip("=")


def sign_bytes(data: bytes, private_key_path: Path) -> dict:
    key = load_private(private_key_path)
    return {"algorithm": "ed25519", "key_id": key_id(public_pem(key)),
            "signature": base64.b64encode(key.sign(data)).decode("ascii")}


def check_public_key(path: Path) -> Path:
    """A trusted public key must exist and be an Ed25519 PEM key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(safeio.read_bytes(path, "public key", 64 * safeio.KiB))
    except (OSError, ValueError) as err:
        raise BundleError(f"public key {str(path)!r}: expected an Ed25519 PEM public key (edgepipe keygen). "
                          f"Received: {err}") from err
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"public key {str(path)!r}: expected an Ed25519 key. Received: {type(key).__name__}")
    return Path(path)


def write_signature(bundle_dir: Path, manifest_bytes: bytes, private_key_path: Path, name: str) -> None:
    sig = sign_bytes(manifest_bytes, private_key_path)
    _write_atomic(Path(bundle_dir) / name, json.dumps(sig, indent=2).encode(), 0o644)


def _write_temp(path: Path, data: bytes, mode: int) -> Path:
    """`data` in a temporary beside `path` (removed if the write fails); the caller renames it."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    os.replace(_write_temp(path, data, mode), path)
