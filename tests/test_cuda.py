"""The CUDA path (skipped where torch sees no CUDA device; CI has none): run on a GPU
machine with ``python -m pytest tests/test_cuda.py -rA``.

What these check on a GPU: the record's mode means fp32 there too (``speed.cuda_math``:
no TF32, deterministic cuDNN), so a step agrees with the CPU to fp32 rounding; a run on the
``tiny`` benchmark repeats and resumes exactly (its videos have at most two labels: with
three or more, the background stream's ``index_add`` adds with atomics on a GPU and may
differ in the last bits); a checkpoint trained there evaluates on the CPU; fast mode picks
bf16 and torch's dropout there. The GPU's dropout masks come from the CUDA generator, so a
whole run on the GPU is not the CPU's run: only dropout-free steps are compared.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from ecmlib.method.model import ECMNet
from ecmlib.training import speed
from ecmlib.training.inference import evaluate_model
from ecmlib.training.setup import load_data, make_config, resolve_device
from ecmlib.training.step import step_losses, training_inputs
from ecmlib.training.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
CUDA = torch.device("cuda")
DROP = ("train_time_s", "eval_time_s")


def _strip(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in DROP} for row in history]


@pytest.fixture(scope="module")
def tiny():
    cfg = make_config("THUMOS14", synthetic="tiny", epochs=3,
                      overrides=["eval_every=1", "batch_size=16", "train.device=cuda"])
    return cfg, load_data(cfg)


@pytest.fixture(scope="module")
def cuda_run(tiny, tmp_path_factory):
    cfg, data = tiny
    return train(cfg, data=data, out_dir=tmp_path_factory.mktemp("cuda") / "run",
                 progress=False, log=None)


def test_cuda_math_is_fp32_and_restores_the_flags() -> None:
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(8, 512, 256, generator=gen), torch.randn(256, 512, 3, generator=gen)
    exact = F.conv1d(x.double(), w.double())
    before = speed.cuda_flags()
    with speed.cuda_math(CUDA, "fp32"):
        assert speed.cuda_flags() == speed.cuda_flags(record=True)
        got = F.conv1d(x.to(CUDA), w.to(CUDA)).double().cpu()
    assert speed.cuda_flags() == before
    err = ((got - exact).abs().max() / exact.abs().max()).item()
    print(f"\nconv1d on the GPU in cuda_math: max relative error {err:.2e}")
    assert err < 1e-5  # fp32 rounding; TF32 (10 mantissa bits) is some 1e-4 here
    with speed.cuda_math(CUDA, "bf16"):
        assert speed.cuda_flags() == before  # fast mode keeps torch's defaults


def test_a_dropout_free_step_agrees_with_the_cpu(tiny) -> None:
    """Losses and every gradient of one training step, dropout off, CPU against GPU."""
    cfg = tiny[0]
    x = torch.from_numpy(tiny[1][0].features[:16])
    y = torch.from_numpy(tiny[1][0].labels[:16])
    out = {}
    for device in (torch.device("cpu"), CUDA):
        torch.manual_seed(0)
        model = ECMNet(cfg.model).to(device).eval()  # eval: no dropout, the same on both
        with speed.cuda_math(device, "fp32"):
            xs, grouped = training_inputs(model, x.to(device), cfg)
            losses = step_losses(model, xs, y.to(device), cfg, grouped)
            losses["loss_total"].backward()
        out[device.type] = ({k: v.item() for k, v in losses.items()},
                            {n: p.grad.cpu() for n, p in model.named_parameters()})
    (loss_c, grad_c), (loss_g, grad_g) = out["cpu"], out["cuda"]
    assert loss_c.keys() == loss_g.keys()
    for k in loss_c:
        assert loss_g[k] == pytest.approx(loss_c[k], rel=1e-5, abs=1e-7), k
    for n in grad_c:
        scale = grad_c[n].abs().max().item() or 1.0
        assert (grad_g[n] - grad_c[n]).abs().max().item() <= 1e-4 * scale, n


def test_a_cuda_run_repeats_exactly(tiny, cuda_run) -> None:
    cfg, data = tiny
    again = train(cfg, data=data, progress=False, log=None)
    assert _strip(again.history) == _strip(cuda_run.history)
    assert again.metrics["device"].startswith("cuda") and "gpu" in again.metrics
    assert again.metrics["precision"] == "fp32"


def test_a_cuda_run_resumes_exactly(tiny, cuda_run, tmp_path) -> None:
    cfg, data = tiny
    one = train(cfg.with_overrides(["train.epochs=1"]), data=data, out_dir=tmp_path / "one",
                progress=False, log=None)
    rest = train(cfg, data=data, out_dir=tmp_path / "rest", progress=False, log=None,
                 resume=one.run_dir / "last.pth")
    assert _strip(rest.history) == _strip(cuda_run.history)


def test_a_cuda_checkpoint_evaluates_on_the_cpu(tiny, cuda_run) -> None:
    cfg, data = tiny
    ckpt = torch.load(cuda_run.run_dir / "last.pth", weights_only=True, map_location="cpu")
    results = {}
    for device in ("cpu", "cuda"):
        model = ECMNet(cfg.model)
        model.load_state_dict(ckpt["state_dict"])
        results[device] = evaluate_model(model.to(device), data[1], cfg).metrics
    last = json.loads((cuda_run.run_dir / "history.json").read_text())[-1]
    assert results["cuda"]["mAP@0.5"] == pytest.approx(last["mAP@0.5"], abs=1e-9)
    # the same weights on the CPU: equal up to localisation thresholds that fp32 rounding
    # flips (mAPs are fractions)
    for key in ("mAP@0.1", "mAP@0.5", "average_mAP@0.1:0.7"):
        assert results["cpu"][key] == pytest.approx(results["cuda"][key], abs=0.02), key


def test_fast_mode_on_cuda_is_bf16_with_torch_dropout(tiny) -> None:
    cfg, data = tiny
    before = speed.cuda_flags()
    run = train(cfg.with_overrides(["train.fast=true", "train.epochs=2"]), data=data,
                progress=False, log=None)
    assert speed.cuda_flags() == before
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    assert run.metrics["precision"] == expected
    assert run.metrics["dropout_mask"] == "torch"
    assert run.metrics["aggregation_path"] in ("features", "taps")
    assert all(torch.isfinite(torch.tensor(r["loss_total"])) for r in run.history)


def test_device_names() -> None:
    assert resolve_device("auto") == CUDA
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(RuntimeError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
