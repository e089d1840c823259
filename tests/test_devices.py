"""aescore.devices: one device rule (auto = cuda, then mps, then cpu) with domain errors that name no flag."""

from __future__ import annotations

import pytest
import torch

from aescore import devices
from aescore.errors import ConfigError, DeviceError


def _machine(mp: pytest.MonkeyPatch, *, cuda: int = 0, mps: bool = False) -> None:
    mp.setattr(torch.cuda, "is_available", lambda: cuda > 0)
    mp.setattr(torch.cuda, "device_count", lambda: cuda)
    mp.setattr(devices, "mps_available", lambda: mps)


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine(monkeypatch, cuda=1, mps=True)
    assert devices.resolve_device() == "cuda"
    _machine(monkeypatch, cuda=0, mps=True)
    assert devices.resolve_device("auto") == "mps"
    _machine(monkeypatch, cuda=0, mps=False)
    assert devices.resolve_device("AUTO") == "cpu"
    assert devices.resolve_device("cpu") == "cpu"


def test_explicit_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine(monkeypatch, cuda=2, mps=True)
    assert devices.resolve_device("cuda:1") == "cuda:1" and devices.resolve_device("mps") == "mps"
    with pytest.raises(DeviceError, match="2 CUDA GPU"):
        devices.resolve_device("cuda:2")
    _machine(monkeypatch, cuda=0, mps=False)
    for name in ("cuda", "cuda:0", "mps"):
        with pytest.raises(DeviceError) as err:
            devices.resolve_device(name)
        assert "--" not in str(err.value) and err.value.exit_code == 1


def test_unknown_device_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine(monkeypatch)
    for bad in ("tpu", "cuda:x", "gpu", ""):
        with pytest.raises(ConfigError) as err:
            devices.resolve_device(bad)
        assert err.value.setting == "device" and "--" not in str(err.value)
        assert isinstance(err.value, ValueError) and err.value.exit_code == 2


def test_torch_device_takes_the_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine(monkeypatch, cuda=4)
    assert devices.torch_device("cuda", local_rank=3) == torch.device("cuda", 3)
    assert devices.torch_device("cuda:2", local_rank=3) == torch.device("cuda", 2)
    _machine(monkeypatch)
    assert devices.torch_device() == torch.device("cpu")


def test_module_does_not_import_torch_at_import_time() -> None:
    import subprocess
    import sys

    code = "import sys, aescore.devices; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_gpu_is_seen_without_torch_on_linux_and_wsl2(monkeypatch: pytest.MonkeyPatch) -> None:
    """`auto` must find CUDA without importing torch: the driver's device file on Linux, /dev/dxg
    under WSL2 (which has neither /proc/driver/nvidia nor /dev/nvidia0)."""
    from aescore import devices

    monkeypatch.setattr(devices.sys, "platform", "linux")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(devices.os.path, "isdir", lambda path: False)
    for present, expected in ((set(), False), ({"/dev/nvidia0"}, True), ({"/dev/dxg"}, True)):
        monkeypatch.setattr(devices.os.path, "exists", lambda path, present=present: path in present)
        assert devices.cuda_gpu_likely() is expected, present
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert devices.cuda_gpu_likely() is False
