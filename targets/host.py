"""What this host has, probed without importing any toolkit.

Packages are looked up with `importlib.util.find_spec` (no import), executables on PATH, shared
libraries with `ctypes.util.find_library`, and devices by their Linux device nodes or USB ids in
sysfs. Nothing here loads TensorFlow, OpenVINO or a delegate: `edgepipe targets` must stay light.
"""

from __future__ import annotations

import ctypes.util
import glob
import shutil
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

SYSFS_USB = Path("/sys/bus/usb/devices")


@dataclass(frozen=True)
class Device:
    """A device a target compiles for or runs on, and how to recognise it on Linux."""

    key: str
    name: str
    usb_ids: tuple[tuple[str, str], ...] = ()  # (idVendor, idProduct) in hex, as sysfs writes them
    dev_globs: tuple[str, ...] = ()  # device nodes, e.g. /dev/apex_0 (Coral PCIe/M.2)

    def present(self, usb_root: Path = SYSFS_USB) -> bool:
        if any(glob.glob(g) for g in self.dev_globs):
            return True
        return bool(set(self.usb_ids) & usb_devices(usb_root))


# Coral USB Accelerator enumerates as 1a6e:089a until libedgetpu loads its firmware, then 18d1:9302.
EDGETPU = Device("edgetpu", "Coral Edge TPU (USB 1a6e:089a / 18d1:9302, or PCIe /dev/apex_*)",
                 usb_ids=(("1a6e", "089a"), ("18d1", "9302")), dev_globs=("/dev/apex_*",))
# Intel NPU (Core Ultra) driver exposes /dev/accel/accel*; OpenVINO lists it as "NPU".
INTEL_NPU = Device("npu", "Intel NPU (/dev/accel/accel*, OpenVINO device 'NPU')", dev_globs=("/dev/accel/accel*",))
# Neural Compute Stick 2 (Myriad X): 03e7:2485 before boot, 03e7:f63b once the firmware is loaded.
MYRIAD = Device("myriad", "Intel Neural Compute Stick 2 / Myriad X (USB 03e7:2485 / 03e7:f63b)",
                usb_ids=(("03e7", "2485"), ("03e7", "f63b")))

DEVICES = {d.key: d for d in (EDGETPU, INTEL_NPU, MYRIAD)}


def usb_devices(root: Path = SYSFS_USB) -> set[tuple[str, str]]:
    found = set()
    if not root.is_dir():
        return found
    for dev in root.iterdir():
        try:
            found.add(((dev / "idVendor").read_text().strip(), (dev / "idProduct").read_text().strip()))
        except OSError:
            continue
    return found


def has_package(name: str) -> bool:
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def has_executable(name: str) -> bool:
    return shutil.which(name) is not None


def has_library(name: str) -> bool:
    """`name` without 'lib' and suffix, e.g. 'edgetpu' for libedgetpu.so.1."""
    return ctypes.util.find_library(name) is not None
