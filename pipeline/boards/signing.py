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


def default_key_dir() -> Path:
    return Path(os.environ.get("EDGEPIPE_KEYS") or Path.home() / ".config" / "edgepipe" / "keys")


def keygen(directory: Path, force: bool = False) -> tuple[Path, Path]:
    """Write a new key pair: edgepipe.key (PKCS8 PEM, mode 0600) and edgepipe.pub (PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    directory = Path(directory)
    priv_path, pub_path = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    if not force and (priv_path.exists() or pub_path.exists()):
        raise InputError(f"keygen: expected no key in {str(directory)!r}. Received: {priv_path.name} exists "
                         "(use --force to replace it; bundles signed with the old key will no longer verify)")
    directory.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_atomic(priv_path, priv, 0o600)
    _write_atomic(pub_path, pub, 0o644)
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


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
