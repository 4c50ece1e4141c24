"""Bundle archives (.tar): pack a verified bundle directory, unpack one safely.

Unpacking inspects every member before writing anything: absolute paths, `..`, symbolic and
hard links, devices and FIFOs, sparse members are refused, and so is a member name that appears
twice. The check streams the headers (a compressed archive is inflated once, never extracted):
more than `MAX_MEMBERS` members, more than `MAX_TOTAL` bytes of members, or a decompressed stream
more than `MAX_RATIO` times the archive's size (past `RATIO_FLOOR`) is refused as an archive bomb
before a byte is written. The archive itself must be a regular file (`edgepipe.core.safeio`).
Members are extracted into a marked temporary directory (`edgepipe.core.tempdirs`) that is renamed
into place only at the end.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

from edgepipe.boards.device_runner import bundle_files, safe_relpath
from edgepipe.core import safeio, tempdirs
from edgepipe.core.errors import BundleError, InputError

MAX_MEMBERS = 10_000
MAX_TOTAL = 16 * safeio.GiB  # bytes of all members
MAX_RATIO = 50  # decompressed tar stream / archive file size
RATIO_FLOOR = 64 * safeio.MiB  # small archives may compress better than that


def pack(bundle_dir: Path, archive: Path) -> Path:
    """Write `archive` (.tar) holding `<bundle name>/...` (regular files and directories only)."""
    bundle_dir, archive = Path(bundle_dir), Path(archive)
    files, links = bundle_files(str(bundle_dir))
    if links:
        raise BundleError(f"pack {str(bundle_dir)!r}: expected regular files only. Received links: {links}")
    with tempdirs.scratch_beside(archive) as shell:
        tmp = shell / archive.name
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for rel in files:
                info = tar.gettarinfo(str(bundle_dir / rel), arcname=f"{bundle_dir.name}/{rel}")
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(bundle_dir / rel, "rb") as f:
                    tar.addfile(info, f)
        os.replace(tmp, archive)
    return archive


def check_members(tar: tarfile.TarFile, what: str, archive_bytes: int | None = None
                  ) -> tuple[str, list[tarfile.TarInfo]]:
    """All members must be regular files or directories under one top-level directory name; the
    headers are read one at a time and the bomb limits checked as they stream by."""
    members: list[tarfile.TarInfo] = []
    seen, tops = set(), set()
    total = 0
    limit = max(RATIO_FLOOR, MAX_RATIO * archive_bytes) if archive_bytes is not None else None
    for m in tar:
        members.append(m)
        total += m.size
        if len(members) > MAX_MEMBERS:
            raise BundleError(f"{what}: expected at most {MAX_MEMBERS} members. Received: more")
        if total > MAX_TOTAL:
            raise BundleError(f"{what}: expected at most {safeio.human(MAX_TOTAL)} of files. Received: more")
        if limit is not None and tar.offset > limit:
            raise BundleError(f"{what}: expected an archive that inflates at most {MAX_RATIO}x its size "
                              f"({safeio.human(archive_bytes)}). Received: more than {safeio.human(limit)} "
                              "(an archive bomb?)")
        if m.issparse():
            raise BundleError(f"{what}: expected regular files. Received a sparse member: {m.name!r}")
        name = m.name[:-1] if m.name.endswith("/") else m.name
        if not safe_relpath(name):
            raise BundleError(f"{what}: expected relative paths inside the bundle. Received: {m.name!r}")
        if m.issym() or m.islnk():
            raise BundleError(f"{what}: expected regular files only. Received a link: {m.name!r} -> {m.linkname!r}")
        if not (m.isfile() or m.isdir()):
            raise BundleError(f"{what}: expected regular files and directories. Received: {m.name!r} "
                              f"(tar type {m.type!r})")
        if "/" not in name and not m.isdir():  # the top level holds the bundle's directory, nothing else
            raise BundleError(f"{what}: expected one top-level bundle directory. Received: a file {m.name!r} at "
                              "the top level")
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
        f = safeio.open_regular(archive, "bundle archive")
    except InputError as err:
        raise BundleError(str(err)) from None
    size = os.fstat(f.fileno()).st_size
    try:
        tar = tarfile.open(fileobj=f, mode="r:*")
        top, members = check_members(tar, what, size)
    except (OSError, EOFError, tarfile.TarError, ValueError) as err:  # zlib/lzma/bz2 errors are OSError/EOFError
        f.close()
        raise BundleError(f"{what}: expected a .tar archive. Received: {type(err).__name__}: {err}") from None
    except BaseException:
        f.close()
        raise
    with f, tar:
        final = dest_parent / top
        if final.exists():
            raise BundleError(f"{what}: expected {str(final)!r} not to exist. Received: it exists")
        with tempdirs.scratch_beside(final, stem=f"unpack-{top}") as shell:
            tmp = shell / top
            tmp.mkdir()
            try:
                for m in members:
                    rel = m.name.rstrip("/").split("/", 1)
                    target = tmp.joinpath(*rel[1].split("/")) if len(rel) == 2 else tmp
                    if m.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(m)
                    with src, open(target, "xb") as dst:
                        shutil.copyfileobj(src, dst)
                os.rename(tmp, final)
            except (EOFError, tarfile.TarError) as err:
                raise BundleError(f"{what}: expected a readable .tar archive. Received: {type(err).__name__}: "
                                  f"{err}") from None
    return final
