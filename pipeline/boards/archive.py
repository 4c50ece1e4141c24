"""Bundle archives (.tar): pack a verified bundle directory, unpack one safely.

Unpacking inspects every member before writing anything: absolute paths, `..`, symbolic and
hard links, devices and FIFOs are refused, and so is a member name that appears twice. Members
are extracted into a private temporary directory that is renamed into place only at the end.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

from pipeline.boards.device_runner import bundle_files, safe_relpath
from pipeline.core.errors import BundleError


def pack(bundle_dir: Path, archive: Path) -> Path:
    """Write `archive` (.tar) holding `<bundle name>/...` (regular files and directories only)."""
    bundle_dir, archive = Path(bundle_dir), Path(archive)
    files, links = bundle_files(str(bundle_dir))
    if links:
        raise BundleError(f"pack {str(bundle_dir)!r}: expected regular files only. Received links: {links}")
    tmp = archive.with_name(f".{archive.name}.tmp-{os.getpid()}")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for rel in files:
            info = tar.gettarinfo(str(bundle_dir / rel), arcname=f"{bundle_dir.name}/{rel}")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(bundle_dir / rel, "rb") as f:
                tar.addfile(info, f)
    os.replace(tmp, archive)
    return archive


def check_members(tar: tarfile.TarFile, what: str) -> tuple[str, list[tarfile.TarInfo]]:
    """All members must be regular files or directories under one top-level directory name."""
    members = tar.getmembers()
    seen, tops = set(), set()
    for m in members:
        name = m.name[:-1] if m.name.endswith("/") else m.name
        if not safe_relpath(name):
            raise BundleError(f"{what}: expected relative paths inside the bundle. Received: {m.name!r}")
        if m.issym() or m.islnk():
            raise BundleError(f"{what}: expected regular files only. Received a link: {m.name!r} -> {m.linkname!r}")
        if not (m.isfile() or m.isdir()):
            raise BundleError(f"{what}: expected regular files and directories. Received: {m.name!r} "
                              f"(tar type {m.type!r})")
        if name in seen:
            raise BundleError(f"{what}: expected each path once. Received {m.name!r} twice")
        seen.add(name)
        tops.add(name.split("/")[0])
    if len(tops) != 1:
        raise BundleError(f"{what}: expected one top-level bundle directory. Received: {sorted(tops) or 'nothing'}")
    return tops.pop(), members


def unpack(archive: Path, dest_parent: Path) -> Path:
    """Extract a checked archive into `dest_parent/<bundle name>`; returns that directory."""
    archive, dest_parent = Path(archive), Path(dest_parent)
    what = f"bundle archive {str(archive)!r}"
    try:
        tar = tarfile.open(archive, "r:*")
    except (OSError, tarfile.TarError) as err:
        raise BundleError(f"{what}: expected a .tar archive. Received: {err}") from err
    with tar:
        top, members = check_members(tar, what)
        final = dest_parent / top
        if final.exists():
            raise BundleError(f"{what}: expected {str(final)!r} not to exist. Received: it exists")
        tmp = dest_parent / f".tmp-unpack-{top}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            for m in members:
                rel = m.name.rstrip("/").split("/", 1)
                target = tmp.joinpath(*rel[1].split("/")) if len(rel) == 2 else tmp
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                with src, open(target, "xb") as f:
                    shutil.copyfileobj(src, f)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
