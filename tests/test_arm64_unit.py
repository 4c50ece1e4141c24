"""arm64-emulated check without emulation: output comparison, host statuses, userland view, CLI errors.

The emulated runs themselves are in tests/test_arm64_emulated.py (marker `arm64`, `tox -e arm64`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from edgepipe.cli.app import app
from edgepipe.core.errors import ConfigError, StageError
from edgepipe.targets.arm64 import emulated as arm64_emulated
from edgepipe.targets.arm64 import userland as arm64_userland
from edgepipe.targets.arm64.compare import Tolerance, compare, max_abs_diff, summary
from edgepipe.targets.arm64.userland import APT_HINT, Unavailable, Userland

ASSETS = Path(__file__).parent / "device" / "assets"
runner = CliRunner()


def _int8(seed=0, n=5, c=4):
    return np.random.default_rng(seed).integers(-128, 128, size=(n, c)).astype(np.int8)


def _deq(raw):
    return ((raw.astype(np.float32) + 128) / 256).astype(np.float32)


# ---- comparison ------------------------------------------------------------------------------
def test_identical_int8_outputs_are_bit_exact():
    raw = _int8()
    rec = compare(raw, raw.copy(), _deq(raw), _deq(raw), labels=raw.argmax(1))
    assert rec["bit_exact"] and rec["differing_outputs"] == 0 and rec["max_lsb_diff"] == 0
    assert rec["top1_agree"] == 5 and rec["top1_agreement"] == 1.0
    assert rec["top1_arm64"] == rec["top1_host"] == 1.0 and rec["labeled"] == 5
    assert rec["within_tolerance"] and rec["reasons"] == []
    assert summary(rec) == "vs host on 5 imgs: bit-exact; top-1 agree 5/5"


def test_int8_difference_counted_in_lsb_and_judged_against_the_tolerance():
    host = np.zeros((3, 4), np.int8)
    host[:, 0] = 10  # class 0 wins everywhere on the host
    arm = host.copy()
    arm[1, 2] = 1  # one output 1 LSB off: within the default tolerance, not bit-exact
    rec = compare(arm, host, _deq(arm), _deq(host))
    assert not rec["bit_exact"] and rec["differing_outputs"] == 1 and rec["max_lsb_diff"] == 1
    assert rec["within_tolerance"] and rec["top1_agree"] == 3
    arm[2, 3] = 13  # 13 LSB off, and it flips that image's top-1
    rec = compare(arm, host, _deq(arm), _deq(host))
    assert rec["differing_outputs"] == 2 and rec["max_lsb_diff"] == 13
    assert not rec["within_tolerance"] and rec["top1_agree"] == 2
    assert rec["reasons"] == ["2 of 12 int8 outputs differ, by up to 13 LSB (tolerance 1)"]
    assert "2/12 differ, max 13 LSB" in summary(rec)
    strict = compare(host.copy(), host, _deq(host), _deq(host), tol=Tolerance(max_lsb=0))
    assert strict["within_tolerance"]
    host_wrap = np.array([[-128, 127]], np.int8)  # no int8 wrap-around in the difference
    assert compare(host_wrap[:, ::-1].copy(), host_wrap, _deq(host_wrap), _deq(host_wrap))["max_lsb_diff"] == 255


def test_fp32_outputs_compared_by_max_abs_difference():
    host = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], np.float32)
    arm = host + np.float32(2e-5)
    rec = compare(arm, host, arm, host)
    assert "max_lsb_diff" not in rec and not rec["bit_exact"]
    assert rec["max_abs_diff"] == pytest.approx(2e-5, rel=0.05) and rec["within_tolerance"]
    arm[0, 0] += 1e-3
    rec = compare(arm, host, arm, host)
    assert not rec["within_tolerance"] and "exceeds 0.0001" in rec["reasons"][0]
    assert summary(rec).startswith("vs host on 2 imgs: max abs diff 0.001")


def test_nan_only_on_one_side_is_an_infinite_difference():
    a = np.array([[np.nan, 1.0]], np.float32)
    assert max_abs_diff(a, a.copy()) == 0.0
    assert max_abs_diff(a, np.array([[0.0, 1.0]], np.float32)) == np.inf
    rec = compare(a, np.array([[0.0, 1.0]], np.float32), a, np.array([[0.0, 1.0]], np.float32))
    assert not rec["within_tolerance"]


@pytest.mark.parametrize("arm,host,match", [
    (np.zeros((2, 3), np.int8), np.zeros((2, 4), np.int8), "equal shapes"),
    (np.zeros((2, 3), np.int8), np.zeros((2, 3), np.uint8), "equal dtypes"),
    (np.zeros((0, 3), np.int8), np.zeros((0, 3), np.int8), "non-empty"),
])
def test_mismatched_outputs_are_a_stage_error(arm, host, match):
    with pytest.raises(StageError, match=match):
        compare(arm, host, arm.astype(np.float32), host.astype(np.float32))


# ---- host statuses ---------------------------------------------------------------------------
_REAL_WHICH = shutil.which


def _which_without(*missing):
    def which(name, *a, **kw):
        return None if name in missing else _REAL_WHICH(name, *a, **kw)
    return which


def test_not_linux_and_native_arm64_hosts_get_their_status(monkeypatch):
    monkeypatch.setattr(arm64_userland.platform, "system", lambda: "Darwin")
    p = arm64_userland.host_problems()
    assert p.status == "not-linux" and "Received: Darwin" in str(p) and p.exit_code == 3
    monkeypatch.setattr(arm64_userland.platform, "system", lambda: "Linux")
    monkeypatch.setattr(arm64_userland.platform, "machine", lambda: "aarch64")
    assert arm64_userland.host_problems().status == "native-arm64"


def test_missing_qemu_and_debootstrap_name_the_apt_command(monkeypatch):
    monkeypatch.setattr(arm64_userland.platform, "system", lambda: "Linux")
    monkeypatch.setattr(arm64_userland.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(arm64_userland.shutil, "which", _which_without("qemu-aarch64-static"))
    p = arm64_userland.host_problems()
    assert p.status == "no-qemu" and APT_HINT in str(p)
    monkeypatch.setattr(arm64_userland.shutil, "which", _which_without("debootstrap"))
    if _REAL_WHICH("qemu-aarch64-static") is None:
        pytest.skip("qemu-user-static not installed here (.ci/run installs it)")
    p = arm64_userland.host_problems(need_build=True)
    assert p.status == "no-debootstrap" and APT_HINT in str(p)
    assert arm64_userland.host_problems(need_build=False) is None  # a cached userland needs no debootstrap


def test_ensure_userland_without_qemu_raises_before_building(monkeypatch, tmp_path):
    monkeypatch.setattr(arm64_userland.shutil, "which", _which_without("qemu-aarch64-static"))
    with pytest.raises(Unavailable) as info:
        arm64_userland.ensure_userland(cache_root=tmp_path)
    assert info.value.status == "no-qemu"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(arm64_userland.host_problems(need_build=True) is not None,
                    reason="needs qemu-user-static, debootstrap and root (.ci/run installs the packages)")
def test_unreachable_mirror_is_a_no_network_status_and_leaves_nothing(tmp_path):
    with pytest.raises(Unavailable) as info:
        arm64_userland.ensure_userland(cache_root=tmp_path, mirror="http://127.0.0.1:9/debian", log=lambda m: None)
    assert info.value.status == "no-network" and "Failed getting release file" in str(info.value)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(("arm64-rootfs-", ".tmp-"))]


def test_unreachable_package_index_is_a_no_network_status(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")  # only the index given here
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(Unavailable) as info:
        arm64_userland.download_wheels(tmp_path / "w", {"ai-edge-litert": "2.3.0"},
                                       index_url="http://127.0.0.1:9/simple", retries=1)
    assert info.value.status == "no-network" and "Connection refused" in str(info.value)


def test_pip_platforms_cover_every_manylinux_tag_of_the_userland_glibc():
    tags = arm64_userland.pip_platforms()
    assert tags[0] == "manylinux_2_36_aarch64" and "manylinux_2_27_aarch64" in tags
    assert "manylinux_2_17_aarch64" in tags and tags[-1] == "manylinux2014_aarch64" and len(tags) == 21


# ---- the per-run view of the userland ------------------------------------------------------------
def test_view_links_the_userland_and_adds_an_arm_cpuinfo(tmp_path):
    root = tmp_path / "rootfs"
    for d in ("usr/bin", "etc", "proc", "site"):
        (root / d).mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")
    view = Userland(root, "k").view(tmp_path / "run", "cortex-a72")
    assert (view / "usr").resolve() == (root / "usr").resolve() and (view / "lib").is_symlink()
    assert not (view / "site").exists() and not (root / "proc" / "cpuinfo").exists()
    text = (view / "proc" / "cpuinfo").read_text()
    assert text.count("processor\t:") == len(arm64_userland._host_cpu_ids()) >= 1
    assert "CPU implementer\t: 0x41" in text and "CPU part\t: 0xd08" in text
    cmd = Userland(root, "k").command(view, "cortex-a72", Path("r.py"), "--x")
    assert cmd[1:5] == ["-cpu", "cortex-a72", "-L", str(view)] and cmd[-2:] == ["r.py", "--x"]
    with pytest.raises(ConfigError, match="cortex-a76"):
        Userland(root, "k").view(tmp_path / "run2", "max")


# ---- CLI and pipeline row when the host cannot ------------------------------------------------------
def test_verify_arm_cli_without_qemu_exits_4_with_the_apt_command(monkeypatch):
    monkeypatch.setattr(arm64_userland.shutil, "which", _which_without("qemu-aarch64-static"))
    res = runner.invoke(app, ["verify-arm", str(ASSETS / "tiny_int8.tflite")])
    assert res.exit_code == 3 and "no-qemu" in res.output and APT_HINT in " ".join(res.output.split())
    res = runner.invoke(app, ["verify-arm", str(ASSETS / "tiny_int8.tflite"), "--json"])
    status = json.loads(res.stdout.strip().splitlines()[0])
    assert res.exit_code == 3 and status["status"] == "unavailable" and status["reason"] == "no-qemu"


@pytest.mark.parametrize("args,match", [
    (["nope.tflite"], "a .tflite file or a published artifact directory"),
    ([str(ASSETS / "tiny_int8.tflite"), "--cpu", "max"], "--cpu: expected one of"),
])
def test_verify_arm_cli_bad_input_exits_2(args, match):
    res = runner.invoke(app, ["verify-arm", *args])
    assert res.exit_code == 2 and match in " ".join(res.output.split())


def test_verify_arm_needs_preprocessing_and_data_sources(tmp_path):
    from edgepipe.targets.arm64.verify import load_data, resolve_artifact

    art = tmp_path / "out" / "artifacts" / "tflite-arm-int8"
    art.mkdir(parents=True)
    shutil.copy(ASSETS / "tiny_int8.tflite", art / "model_int8.tflite")
    model = resolve_artifact(art)
    assert model == art / "model_int8.tflite"
    with pytest.raises(Exception, match="preprocess.json"):
        load_data(model, 4)
    (art / "preprocess.json").write_text(json.dumps({"height": 8, "width": 8, "channels": 3, "mode": "xception",
                                                     "interpolation": "bilinear", "color": "rgb"}))
    (art / "labels.txt").write_text("a\nb\nc\n")
    with pytest.raises(Exception, match="expected --data SOURCE"):
        load_data(model, 4)
    with pytest.raises(ConfigError, match="--split"):
        load_data(model, 4, data=str(tmp_path), split="holdout")


def test_pipeline_row_is_skipped_with_the_reason_when_the_host_cannot(monkeypatch):
    ctx = SimpleNamespace(console=SimpleNamespace(print=lambda *a, **k: None))
    built = {"artifact": "tflite-arm/int8", "status": "passed"}
    row = arm64_emulated.pipeline_row(ctx, "tflite-arm/int8", "int8", None, 4, [built | {"status": "error"}])
    assert row["status"] == "skipped" and row["reasons"] == ["tflite-arm/int8 was not built"]
    monkeypatch.setattr(arm64_userland.shutil, "which", _which_without("qemu-aarch64-static"))
    row = arm64_emulated.pipeline_row(ctx, "tflite-arm/int8", "int8", None, 4, [built])
    assert row["artifact"] == "tflite-arm/int8 (arm64, emulated)" and row["target"] == "arm64-emulated"
    assert row["status"] == "skipped" and row["unavailable"] == "no-qemu" and APT_HINT in row["reasons"][0]


def test_verify_arm64_option_is_validated():
    from edgepipe.config.schema import TargetEntry

    assert TargetEntry(name="tflite-arm", options={"verify_arm64": 4}).typed_options().verify_arm64 == 4
    with pytest.raises(ValueError, match="verify_arm64"):
        TargetEntry(name="tflite-arm", options={"verify_arm64": -1})
