"""Host probes for `edgepipe targets`: devices recognised by USB id in a sysfs-like tree, no toolkit imported."""

from __future__ import annotations

from edgepipe.targets import host


def _usb(root, name, vendor, product):
    d = root / name
    d.mkdir(parents=True)
    (d / "idVendor").write_text(vendor + "\n")
    (d / "idProduct").write_text(product + "\n")


def test_usb_devices_are_recognised_by_id(tmp_path):
    _usb(tmp_path, "1-1", "1d6b", "0002")  # a root hub: nothing we target
    assert not host.EDGETPU.present(tmp_path) and not host.MYRIAD.present(tmp_path)
    _usb(tmp_path, "1-2", "18d1", "9302")  # Coral USB Accelerator after its firmware loaded
    _usb(tmp_path, "1-3", "03e7", "2485")  # Neural Compute Stick 2 before boot
    (tmp_path / "usb-no-ids").mkdir()  # interfaces without ids are skipped
    assert host.usb_devices(tmp_path) >= {("18d1", "9302"), ("03e7", "2485")}
    assert host.EDGETPU.present(tmp_path) and host.MYRIAD.present(tmp_path)


def test_missing_sysfs_means_no_usb_device(tmp_path):
    assert host.usb_devices(tmp_path / "nope") == set()
    assert not host.MYRIAD.present(tmp_path / "nope")


def test_package_executable_library_probes():
    assert host.has_package("numpy") and not host.has_package("no_such_package_edgepipe")
    assert host.has_executable("sh") and not host.has_executable("no-such-binary-edgepipe")
    assert not host.has_library("no_such_library_edgepipe")
