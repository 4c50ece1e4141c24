"""An arm64 Debian userland for running ARM artifacts under qemu-user emulation.

Built once per (suite, packages, wheel versions) into the edgepipe cache
(`~/.cache/edgepipe/arm64-rootfs-<key>`, or under `$EDGEPIPE_CACHE`). Two recipes (`Variant`):
`BOOKWORM` (Python 3.11 + the host's ai-edge-litert and numpy versions, the default) and
`OLD_BOARD` (bullseye: Python 3.9 + numpy 1.x + tflite-runtime 2.11, the stack of a Raspberry Pi
OS "bullseye" board; Debian buster's Python 3.7 is only on archive.debian.org).

1. `debootstrap --foreign --arch=arm64 --variant=minbase --include=python3 SUITE DIR`
   (a foreign bootstrap only downloads the included packages, so each `.deb` is then
   unpacked with `dpkg-deb -x` — no chroot, no binfmt_misc);
2. `pip download` the variant's aarch64 wheels (BOOKWORM: ai-edge-litert and numpy pinned to the
   host's versions, so both sides run the same LiteRT release) and unzip them into `DIR/site`.

Then `qemu-aarch64-static -L DIR DIR/usr/bin/python3.11 script.py` runs Python as aarch64
with `PYTHONPATH=DIR/site`. The build happens in a private temporary directory that is
renamed into place only when complete (edgepipe.core.cache.StageCache), under a file lock.

When the host cannot do this, `Unavailable` says why with a short status code and what to do.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from edgepipe.core.errors import EXIT_PARTIAL, ConfigError, EdgepipeError

SUITE = "bookworm"
PYTHON = "python3.11"  # bookworm's Python
PY_VERSION = "3.11"
GLIBC = (2, 36)  # bookworm's glibc: wheels up to manylinux_2_36 run there
DEFAULT_MIRROR = "http://deb.debian.org/debian"
WHEELS = ("ai-edge-litert", "numpy")
BUILDER_VERSION = 1  # bump when the recipe below changes
QEMU = "qemu-aarch64-static"
APT_HINT = "apt-get install -y qemu-user-static debootstrap"
EXIT_UNAVAILABLE = EXIT_PARTIAL  # the check could not run on this host: a partial result

_NETWORK_SIGNS = ("Temporary failure in name resolution", "Name or service not known", "Network is unreachable",
                  "Connection refused", "Failed to establish a new connection", "Max retries exceeded",
                  "Could not resolve", "Failed getting release file", "Couldn't download", "ConnectionError",
                  "timed out", "Read timed out", "No route to host", "Could not fetch URL")


@dataclass(frozen=True)
class Variant:
    """One userland recipe: a Debian suite, its Python, and the aarch64 wheels unzipped into DIR/site."""

    name: str
    suite: str
    python: str  # the interpreter in /usr/bin
    py_version: str
    glibc: tuple[int, int]  # the suite's glibc: wheels up to manylinux_<glibc> run there
    pins: tuple[tuple[str, str], ...] | None = None  # wheel -> exact version; None: the host's versions of WHEELS

    def wheels(self) -> dict[str, str | None]:
        return dict(self.pins) if self.pins is not None else wheel_pins()


BOOKWORM = Variant("bookworm", SUITE, PYTHON, PY_VERSION, GLIBC)
# an old board: Raspberry Pi OS / Debian "bullseye" (Python 3.9), numpy < 2, tflite-runtime 2.11 (the oldest
# runtime a TFLite bundle accepts: formats registry, board_min_versions)
OLD_BOARD = Variant("old-board", "bullseye", "python3.9", "3.9", (2, 31),
                    (("tflite-runtime", "2.11.0"), ("numpy", "1.26.4")))
VARIANTS = {v.name: v for v in (BOOKWORM, OLD_BOARD)}


class Unavailable(EdgepipeError):
    """This host cannot run the arm64 emulation; `status` is a short machine-readable code."""

    exit_code = EXIT_UNAVAILABLE

    def __init__(self, status: str, message: str):
        super().__init__(f"arm64 emulation unavailable ({status}): {message}")
        self.status = status


# Emulated cores (qemu -cpu NAME) with the /proc/cpuinfo fields a real board of that core shows:
# (MIDR part, variant, revision, Features). qemu-user passes the host's x86 /proc/cpuinfo through;
# LiteRT's cpuinfo library then finds no ARM core and crashes (SIGSEGV in Interpreter()), so each
# run gets a view of the userland with a matching /proc/cpuinfo. `-cpu max` is not offered: with
# SVE enabled, qemu 7.2 + LiteRT 2.3 gave wrong INT8 outputs on the test model.
CPUS = {
    "cortex-a53": ("0xd03", "0x0", 4, "fp asimd evtstrm crc32 cpuid"),  # Raspberry Pi 3 / Zero 2
    "cortex-a72": ("0xd08", "0x0", 3, "fp asimd evtstrm crc32 cpuid"),  # Raspberry Pi 4
    "cortex-a76": ("0xd0b", "0x4", 1, "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                                      "asimdrdm lrcpc dcpop asimddp"),  # Raspberry Pi 5
    "neoverse-n1": ("0xd0c", "0x3", 1, "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                                       "asimdrdm lrcpc dcpop asimddp ssbs"),  # AWS Graviton2, Ampere Altra
}
DEFAULT_CPU = "cortex-a76"


@dataclass(frozen=True)
class Userland:
    root: Path  # the arm64 root filesystem, shared and never written after it was built
    key: str
    variant: Variant = field(default=BOOKWORM)

    @property
    def python(self) -> Path:
        """The interpreter's path inside the userland (or inside a view of it)."""
        return Path("usr") / "bin" / self.variant.python

    @property
    def site(self) -> Path:
        return self.root / "site"

    def view(self, workdir: Path, cpu: str = DEFAULT_CPU) -> Path:
        """A per-run prefix for qemu -L: links to the userland's top-level entries plus /proc/cpuinfo for `cpu`."""
        if cpu not in CPUS:
            raise ConfigError(f"emulated CPU: expected one of {sorted(CPUS)}. Received: {cpu!r}")
        view = Path(workdir) / "arm64-view"
        view.mkdir(parents=True)
        for entry in self.root.iterdir():
            if entry.name not in ("proc", "site"):
                (view / entry.name).symlink_to(entry)
        (view / "proc").mkdir()
        (view / "proc" / "cpuinfo").write_text(cpuinfo_text(cpu))
        return view

    def command(self, view: Path, cpu: str, script: Path, *args: str) -> list[str]:
        qemu = shutil.which(QEMU) or QEMU
        return [qemu, "-cpu", cpu, "-L", str(view), str(view / self.python), "-B", str(script), *args]

    def env(self, home: Path) -> dict[str, str]:
        """A minimal environment: the aarch64 wheels on PYTHONPATH, nothing from the host's Python."""
        return {"PYTHONPATH": str(self.site), "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
                "PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


def cpuinfo_text(cpu: str) -> str:
    """/proc/cpuinfo as an arm64 board with `cpu` cores shows it, one entry per host CPU (sysfs is the host's)."""
    part, variant, revision, features = CPUS[cpu]
    blocks = [f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
              f"CPU architecture: 8\nCPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: {revision}\n"
              for i in _host_cpu_ids()]
    return "\n".join(blocks)


def _host_cpu_ids() -> list[int]:
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()
        ids = []
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            ids += range(int(lo), int(hi or lo) + 1)
        return ids
    except (OSError, ValueError):
        return list(range(os.cpu_count() or 1))


def wheel_pins() -> dict[str, str | None]:
    """The host's versions of the wheels (None: not installed on the host; then the newest)."""
    from edgepipe.core.versions import version_of

    return {w: version_of(w) for w in WHEELS}


def userland_params(mirror: str = DEFAULT_MIRROR, variant: Variant = BOOKWORM) -> dict:
    """The cache key's parameters (BOOKWORM's are those of the single recipe before variants existed)."""
    return {"suite": variant.suite, "arch": "arm64", "variant": "minbase", "include": ["python3"],
            "python": variant.py_version, "wheels": variant.wheels(), "mirror": mirror, "builder": BUILDER_VERSION}


def host_problems(need_build: bool = True) -> Unavailable | None:
    """Why this host cannot run the emulation (None: it can)."""
    system, machine = platform.system(), platform.machine().lower()
    if system != "Linux":
        return Unavailable("not-linux", f"expected a Linux host (qemu-user runs Linux binaries). Received: {system}")
    if machine in ("aarch64", "arm64"):
        return Unavailable("native-arm64", "this host is arm64 already: run the artifact natively "
                                           "(edgepipe run validates it here) instead of under emulation")
    if shutil.which(QEMU) is None:
        return Unavailable("no-qemu", f"expected {QEMU} on PATH. Received: not found; install it with: {APT_HINT}")
    if need_build:
        missing = [t for t in ("debootstrap", "dpkg-deb") if _which_sbin(t) is None]
        if missing:
            return Unavailable("no-debootstrap", f"expected {' and '.join(missing)} to build the arm64 userland. "
                                                 f"Received: not found; install with: {APT_HINT}")
        if os.geteuid() != 0:
            return Unavailable("not-root", "debootstrap must run as root to build the arm64 userland once. "
                                           f"Received: uid {os.geteuid()}; build it once as root, or set "
                                           "EDGEPIPE_CACHE to a cache where it was built")
    return None


def cached_userland(cache_root: Path, mirror: str = DEFAULT_MIRROR, variant: Variant = BOOKWORM) -> Userland | None:
    from edgepipe.core.cache import StageCache

    hit = StageCache(cache_root).lookup("arm64-rootfs", userland_params(mirror, variant))
    return Userland(hit.path, hit.key, variant) if hit is not None else None


def ensure_userland(cache_root: Path | None = None, mirror: str = DEFAULT_MIRROR, index_url: str | None = None,
                    log=None, variant: Variant = BOOKWORM) -> Userland:
    """The cached userland, building it first if needed. Raises Unavailable with a status."""
    from filelock import FileLock

    from edgepipe.core.cache import StageCache

    if cache_root is None:
        from edgepipe.core.cache import cache_root as default_root

        cache_root = default_root()
    cache_root = Path(cache_root)
    log = log or _stderr_log
    have = cached_userland(cache_root, mirror, variant)
    problem = host_problems(need_build=have is None)
    if problem is not None:
        raise problem
    if have is not None:
        return have
    cache_root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_root / "arm64-rootfs.lock")):
        have = cached_userland(cache_root, mirror, variant)  # another process may have built it meanwhile
        if have is not None:
            return have
        cache = StageCache(cache_root)
        cache.sweep_temporaries()
        res = cache.run("arm64-rootfs", userland_params(mirror, variant),
                        lambda out: build(out, mirror, index_url, log, variant))
        log(f"arm64 userland ready in {res.seconds:.0f} s: {res.path}")
        return Userland(res.path, res.key, variant)


def build(root: Path, mirror: str, index_url: str | None, log, variant: Variant = BOOKWORM) -> dict:
    """Build the userland into `root` (an empty directory that the caller publishes atomically)."""
    t0 = time.perf_counter()
    log(f"arm64 userland: debootstrap --foreign {variant.suite} arm64 (downloads ~40 MB, ~20 s) ...")
    _run([_which_sbin("debootstrap"), "--foreign", "--arch=arm64", "--variant=minbase", "--include=python3",
          variant.suite, str(root), mirror], "debootstrap", timeout=1800)
    debs = sorted((root / "var" / "cache" / "apt" / "archives").glob("*.deb"))
    log(f"arm64 userland: unpacking {len(debs)} packages with dpkg-deb -x ...")
    for deb in debs:
        _run([_which_sbin("dpkg-deb"), "-x", str(deb), str(root)], f"dpkg-deb -x {deb.name}", timeout=300)
        deb.unlink()  # the unpacked files are what counts; the archives only take space
    if not (root / "usr" / "bin" / variant.python).is_file():
        raise Unavailable("rootfs-incomplete", f"expected /usr/bin/{variant.python} in the arm64 userland after "
                                               f"unpacking. Received: none ({len(debs)} packages unpacked)")
    pins = variant.wheels()
    log("arm64 userland: pip download aarch64 wheels " + ", ".join(f"{k}=={v}" if v else k for k, v in pins.items()))
    wheel_dir = root / "wheels"
    download_wheels(wheel_dir, pins, index_url, variant=variant)
    site = root / "site"
    site.mkdir()
    wheels = sorted(wheel_dir.glob("*.whl"))
    for whl in wheels:
        with zipfile.ZipFile(whl) as zf:
            zf.extractall(site)
    shutil.rmtree(wheel_dir)
    log(f"arm64 userland: built in {time.perf_counter() - t0:.0f} s")
    return {"suite": variant.suite, "python": variant.py_version, "packages": len(debs),
            "wheels": [w.name for w in wheels]}


def pip_platforms(glibc: tuple[int, int] = GLIBC) -> list[str]:
    """Every manylinux tag the userland's glibc accepts (pip < 24 does not expand them itself)."""
    major, minor = glibc
    return [f"manylinux_{major}_{m}_aarch64" for m in range(minor, 16, -1)] + ["manylinux2014_aarch64"]


def download_wheels(dest: Path, pins: dict[str, str | None], index_url: str | None = None,
                    retries: int | None = None, variant: Variant = BOOKWORM) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input",
           "--only-binary=:all:", "--python-version", variant.py_version, "--implementation", "cp", "-d", str(dest)]
    for p in pip_platforms(variant.glibc):
        cmd += ["--platform", p]
    if index_url is not None:
        cmd += ["--index-url", index_url]
    if retries is not None:
        cmd += ["--retries", str(retries)]
    cmd += [f"{k}=={v}" if v else k for k, v in pins.items()]
    _run(cmd, "pip download (aarch64 wheels)", timeout=1800)
    return sorted(dest.glob("*.whl"))


def _run(cmd: list, what: str, timeout: float) -> None:
    try:
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        raise Unavailable("no-network", f"{what} did not finish within {timeout:.0f} s "
                                        "(is the package registry reachable?)") from err
    if proc.returncode == 0:
        return
    text = (proc.stderr or "") + (proc.stdout or "")
    tail = " | ".join(ln.strip() for ln in text.strip().splitlines()[-4:])
    if any(s.lower() in text.lower() for s in _NETWORK_SIGNS):
        raise Unavailable("no-network", f"{what} could not reach the package registry (exit {proc.returncode}). "
                                        f"Received: {tail}")
    raise Unavailable("build-failed", f"{what} failed (exit {proc.returncode}). Received: {tail}")


def _which_sbin(tool: str) -> str | None:
    """shutil.which, also looking in the sbin directories a non-login PATH may lack."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin:/usr/bin:/bin"
    return shutil.which(tool, path=path)


def _stderr_log(msg: str) -> None:
    from edgepipe.core.progress import stderr

    stderr.print(f"  {msg}", highlight=False, soft_wrap=True)
