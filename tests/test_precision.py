"""The precision is a choice, never the host's: float32 unless ``--amp``, on every CPU, and
every run records which one it trained in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch  # noqa: F401  (torch before TensorFlow in one process)

from shared.run import hardware
from shared.run.config import TrainConfig, check_resume
from shared.run.errors import ConfigError

BF16_CPU = "processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16 amx_bf16\n"


@pytest.fixture
def bf16_host(monkeypatch):
    """The CPU flags of a host with native bf16 (AVX512-BF16 and AMX), wherever this runs."""
    real = Path.read_text

    def read_text(self, *a, **kw):
        return BF16_CPU if str(self) == "/proc/cpuinfo" else real(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", read_text)
    assert hardware.cpu_has_native_bf16()  # the fake is what the project reads


def _cfg(tmp_path, **kw):
    base = dict(epochs=1, batch_size=32, limit_train=64, run_dir=str(tmp_path / "run"))
    return TrainConfig(**{**base, "knn_every": 0, "warmup_epochs": 1, **kw})


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_a_bf16_cpu_trains_in_float32_unless_asked(framework, tmp_path, bf16_host, capsys):
    """No ``--amp`` on a CPU with native bf16: config.json says ``"amp": false``, metrics.json
    and the epoch's line say float32, and the model really computed in float32."""
    assert TrainConfig().resolve(framework).amp is False
    if framework == "torch":
        from torch_impl.train import train

        model = train(_cfg(tmp_path), progress=False)["model"]
        assert model.autocast is None
        assert {p.dtype for p in model.parameters()} == {torch.float32}
    else:
        from tf_impl.train import train

        model = train(_cfg(tmp_path), progress=False)["model"]
        policies = {la.dtype_policy.name for la in model.net._flatten_layers()}
        assert policies == {"float32"}
    run = tmp_path / "run"
    assert json.loads((run / "config.json").read_text())["amp"] is False
    assert json.loads((run / "metrics.json").read_text())["precision"] == "float32"
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "] epoch" in ln]
    assert lines and all(ln.endswith("  float32") for ln in lines)


def test_amp_is_recorded_as_bf16_autocast():
    assert TrainConfig(amp=True).resolve("torch").precision == "bfloat16 autocast"
    assert TrainConfig().resolve("tensorflow").precision == "float32"


def test_changing_the_precision_on_resume_needs_allow_config_change():
    saved = TrainConfig(amp=False).resolve("torch")
    with pytest.raises(ConfigError, match=r"amp: False -> True .*--allow-config-change"):
        check_resume(saved, TrainConfig(amp=True, resume=True).resolve("torch"))
    allowed = TrainConfig(amp=True, resume=True, allow_config_change=True).resolve("torch")
    assert check_resume(saved, allowed) == ["amp"]
