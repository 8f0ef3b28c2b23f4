"""bf16 autocast, the GPU path of training, exercised on the CPU (issue 9, part 5).

``train.bf16`` wraps the forward pass in ``torch.autocast(device.type, bfloat16)``; the
losses are computed in fp32 and the fp32 master weights and Adam state must stay fp32.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import ecmlib.training.train as train_mod
from ecmlib.method.losses import compute_losses
from ecmlib.method.model import ECMNet
from ecmlib.training.setup import load_data, make_config, seed_everything
from ecmlib.training.train import train


@pytest.fixture(scope="module")
def tiny():
    cfg = make_config("THUMOS14", synthetic="tiny", epochs=2,
                      overrides=["eval_every=2", "batch_size=16", "train.device=cpu"])
    return cfg, load_data(cfg)


def _assert_fp32(model: nn.Module, opt_state: dict) -> None:
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32, name
        assert p.grad is None or p.grad.dtype == torch.float32, name
    tensors = [v for s in opt_state["state"].values() for v in s.values() if torch.is_tensor(v)]
    assert tensors and all(t.dtype == torch.float32 for t in tensors if t.is_floating_point())


def _steps(cfg, train_set, bf16: bool, n: int = 3) -> tuple[list, ECMNet, torch.optim.Adam, set]:
    """n training steps exactly as train() does them (forward under autocast, fp32 losses)."""
    seed_everything(0)
    model = ECMNet(cfg.model)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, betas=cfg.train.betas,
                           weight_decay=cfg.train.weight_decay)
    x = torch.from_numpy(train_set.features[:8])
    y = torch.from_numpy(train_set.labels[:8])
    losses, out_dtypes = [], set()
    for _ in range(n):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x, y, background=cfg.loss.background)
        out_dtypes |= {v.dtype for v in out.values()}
        out = {k: v.float() for k, v in out.items()}
        terms = compute_losses(out, y, cfg.loss, cfg.model.streams)
        opt.zero_grad(set_to_none=True)
        terms["loss_total"].backward()
        opt.step()
        losses.append(terms["loss_total"].item())
        assert all(math.isfinite(t.item()) for t in terms.values()), terms
    return losses, model, opt, out_dtypes


def test_bf16_autocast_steps_on_cpu(tiny):
    cfg, (train_set, _) = tiny
    bf, model, opt, dtypes = _steps(cfg, train_set, bf16=True)
    assert torch.bfloat16 in dtypes, "autocast did not run the forward pass in bf16"
    _assert_fp32(model, opt.state_dict())
    fp, _, _, dtypes32 = _steps(cfg, train_set, bf16=False)
    assert dtypes32 == {torch.float32}
    # bf16 rounds (the losses differ) but trains the same model (they stay close)
    assert bf != fp
    assert all(abs(a - b) <= 0.05 * abs(b) + 1e-3 for a, b in zip(bf, fp)), (bf, fp)


def test_train_with_bf16_on_cpu(tiny, tmp_path, monkeypatch):
    """train() itself with train.bf16 on the CPU: finite history, fp32 checkpoint and Adam state."""
    cfg, data = tiny
    seen: set[torch.dtype] = set()

    class Spy(ECMNet):  # records the dtype of every Conv1d output during the run
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for m in self.modules():
                if isinstance(m, nn.Conv1d):
                    m.register_forward_hook(lambda _m, _i, o: seen.add(o.dtype))

    monkeypatch.setattr(train_mod, "ECMNet", Spy)
    res = train(cfg.with_overrides({"train.bf16": True}), data=data, out_dir=tmp_path / "run",
                progress=False, log=None)
    assert torch.bfloat16 in seen, "the training forward pass did not run under bf16 autocast"
    assert [r["epoch"] for r in res.history] == [1, 2]
    assert all(math.isfinite(r[k]) for r in res.history for k in r if k.startswith("loss_"))
    assert all(p.dtype == torch.float32 for p in res.model.parameters())
    last = torch.load(tmp_path / "run" / "last.pth", map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float32 for v in last["state_dict"].values())
    state = [v for s in last["optimizer"]["state"].values() for k, v in s.items() if k != "step"]
    assert state and all(v.dtype == torch.float32 for v in state)
