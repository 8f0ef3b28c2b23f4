"""Fast mode and the default thread count (ecmlib.training.speed): what is chosen, that it is
recorded, and that a resumed or collected fast run still matches its request."""

from __future__ import annotations

import json

import pytest
import torch

from ecmlib.studies import collect, design
from ecmlib.env import FAST_ENV
from ecmlib.training import speed
from ecmlib.training.checkpoint import config_differences
from ecmlib.training.setup import make_config
from ecmlib.training.train import train


def test_cpu_bf16_reads_the_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    assert speed.cpu_bf16(info) == "avx512_bf16"
    info.write_text("flags\t\t: fpu sse avx512f amx_bf16 avx512_bf16\n")
    assert speed.cpu_bf16(info) == "amx_bf16"
    info.write_text("flags\t\t: fpu sse avx2\n")
    assert speed.cpu_bf16(info) is None
    assert speed.cpu_bf16(tmp_path / "missing") is None


@pytest.mark.parametrize("native, expected", [("amx_bf16", "bf16"), (None, "fp32")])
def test_auto_precision_follows_the_cpu(monkeypatch, native, expected):
    monkeypatch.setattr(speed, "cpu_bf16", lambda: native)
    got, why = speed.resolve_precision("auto", False, torch.device("cpu"))
    assert got == expected and (native or "without") in why
    assert speed.resolve_precision("fp32", False, torch.device("cpu"))[0] == "fp32"
    assert speed.resolve_precision("fp32", True, torch.device("cpu"))[0] == "bf16"  # legacy


def test_a_fast_run_records_what_it_ran_and_resumes_on_it(tmp_path, monkeypatch):
    monkeypatch.setattr(speed, "cpu_bf16", lambda: "amx_bf16")
    cfg = make_config("THUMOS14", synthetic="tiny", epochs=1,
                      overrides=["train.fast=true", "train.num_threads=1"])
    res = train(cfg, out_dir=tmp_path / "run", progress=False, log=None)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["precision"] == "bf16"
    assert saved["model"]["aggregation"] in ("features", "taps")
    assert res.metrics["precision"] == "bf16"
    assert res.metrics["aggregation_path"] == saved["model"]["aggregation"]
    assert saved["model"]["dropout_mask"] == res.metrics["dropout_mask"] == "bits"
    assert res.model.base_module.dropout.mask == "bits"
    # fast mode resolves only an 'auto' mask: a resume naming torch's masks is another run
    named = cfg.with_overrides({"model.dropout_mask": "torch"})
    assert set(config_differences(saved, named)) == {"model.dropout_mask"}
    # The request (fast) matches what it resolved to: a resume or a collection accepts it.
    assert config_differences(saved, cfg) == {}
    # A plain fp32 request does not match a bf16 run.
    plain = make_config("THUMOS14", synthetic="tiny", epochs=1, overrides=["train.num_threads=1"])
    assert "train.precision" in config_differences(saved, plain)
    res2 = train(cfg.with_overrides({"train.epochs": 2}), out_dir=tmp_path / "run",
                 resume=tmp_path / "run", progress=False, log=None)
    assert res2.metrics["precision"] == "bf16" and len(res2.history) == 2


def test_the_record_default_is_unchanged_and_fast_cells_are_other_runs():
    cell = design.studies()["03"].cells[0]
    assert "train.fast" not in cell.command()
    fast = design.studies()["09"].cells
    assert len(fast) == 10 and all(c.fast and "train.fast=true" in c.command() for c in fast)
    assert not {c.cell_id for c in fast} & {c.cell_id for c in design.studies()["03"].cells}
    assert "precision" in collect.columns_of(design.studies()["09"])
    assert "precision" not in collect.columns_of(design.studies()["03"])


def test_default_threads_is_one_beside_another_run(monkeypatch):
    monkeypatch.setattr(speed, "other_ecmlib_runs", lambda: 2)
    assert speed.default_threads() == (1, "2 other ecmlib run(s) active on this machine")
    monkeypatch.setattr(speed, "other_ecmlib_runs", lambda: 0)
    n, why = speed.default_threads()
    assert n >= 1 and "physical core" in why


def test_fastest_path_is_one_of_the_two():
    cfg = make_config("THUMOS14", synthetic="tiny", overrides=["model.aggregation=fastest"])
    times = speed.time_aggregation_paths(cfg.with_overrides({"train.batch_size": 4}),
                                         torch.device("cpu"), steps=1)
    assert set(times) == {"features", "taps"} and all(t > 0 for t in times.values())
    resolved = speed.resolve(cfg, torch.device("cpu"))
    assert resolved.model.aggregation in ("features", "taps")


@pytest.mark.parametrize("bad", ["train.precision=fp16", "model.aggregation=sideways",
                                 "train.num_threads=0", "model.dropout_mask=coin"])
def test_bad_speed_settings_are_refused(bad):
    with pytest.raises(ValueError):
        make_config("THUMOS14", synthetic="tiny", overrides=[bad])


def test_record_fast_gives_fast_studies_of_their_own(capsys):
    from ecmlib.cli import main
    fast = design.studies(fast=True)
    assert "09" not in fast and fast["03"].name == "03_ablation_equivalent_loss_fast"
    assert all(c.fast for s in fast.values() for c in s.cells)
    # 09's cells are the fast runs of 03's ECM and pre-only on data seed 0: trained once.
    assert {c.command() for c in design.studies()["09"].cells} <= \
        {c.command() for c in fast["03"].cells}
    assert main(["record", "--study", "04", "--fast", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 15 and all(ln.startswith("todo") and "train.fast=true" in ln
                                    for ln in lines)


def test_fast_env_turns_fast_mode_on_and_overrides_still_win(monkeypatch):
    monkeypatch.setenv(FAST_ENV, "1")
    assert make_config("THUMOS14", synthetic="tiny").train.fast is True
    assert make_config("THUMOS14", synthetic="tiny",
                       overrides=["train.fast=false"]).train.fast is False
    monkeypatch.delenv(FAST_ENV)
    assert make_config("THUMOS14", synthetic="tiny").train.fast is False


def test_sweep_fast_is_recorded_and_part_of_the_grid(tmp_path, monkeypatch, capsys):
    import os
    from pathlib import Path
    from ecmlib.cli import main
    monkeypatch.delenv(FAST_ENV, raising=False)
    nb = Path(__file__).parent / "fixtures" / "notebooks" / "01_alpha.ipynb"
    out = tmp_path / "sweep"
    rc = main(["sweep", str(nb), "-p", "seed", "0", "--fast", "--out", str(out), "--jobs", "1"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((out / "sweep.json").read_text())["fast"] is True
    os.environ.pop(FAST_ENV, None)
    # The same folder without --fast is another grid: refused, not resumed.
    rc = main(["sweep", str(nb), "-p", "seed", "0", "--out", str(out), "--jobs", "1"])
    assert rc == 2 and "different grid" in capsys.readouterr().err


@pytest.mark.parametrize("asked, fast, expected", [
    ("auto", False, "torch"), ("auto", True, "bits"), ("torch", True, "torch"),
    ("bits", False, "bits")])
def test_dropout_mask_resolution(asked, fast, expected):
    assert speed.resolve_dropout_mask(asked, fast) == expected
    cfg = make_config("THUMOS14", synthetic="tiny",
                      overrides=[f"model.dropout_mask={asked}", f"train.fast={str(fast).lower()}",
                                 "model.aggregation=features"])
    assert speed.resolve(cfg, torch.device("cpu")).model.dropout_mask == expected


def test_a_record_run_draws_torchs_masks_and_old_runs_resume_on_them(tmp_path):
    """The record's runs keep torch's masks; a run saved before the option existed (no
    ``dropout_mask`` in config.json or in last.pth) resumes on torch's masks, also when the
    resume names them, and is refused bits."""
    cfg = make_config("THUMOS14", synthetic="tiny", epochs=1, overrides=["train.num_threads=1"])
    res = train(cfg, out_dir=tmp_path / "run", progress=False, log=None)
    config, last = tmp_path / "run" / "config.json", tmp_path / "run" / "last.pth"
    saved = json.loads(config.read_text())
    assert saved["model"]["dropout_mask"] == res.metrics["dropout_mask"] == "torch"
    del saved["model"]["dropout_mask"]                     # as an older ecmlib wrote them
    config.write_text(json.dumps(saved))
    ckpt = torch.load(last, weights_only=True)
    del ckpt["ecmlib_config"]["model"]["dropout_mask"]
    torch.save(ckpt, last)
    assert config_differences(saved, cfg) == {}
    named = cfg.with_overrides({"train.epochs": 2, "model.dropout_mask": "torch"})
    assert config_differences(saved, named) == {"train.epochs": (1, 2)}
    bits = cfg.with_overrides({"train.epochs": 2, "model.dropout_mask": "bits"})
    assert set(config_differences(saved, bits)) == {"train.epochs", "model.dropout_mask"}
    res2 = train(named, out_dir=tmp_path / "run", resume=tmp_path / "run", progress=False,
                 log=None)
    assert res2.metrics["dropout_mask"] == "torch" and len(res2.history) == 2
    assert res2.model.base_module.dropout.mask == "torch"


def test_off_the_cpu_the_mask_is_torchs():
    """Dropout on a GPU is torch's own (fast there): that is what a run records."""
    for asked in ("auto", "bits", "torch"):
        assert speed.resolve_dropout_mask(asked, True, torch.device("cuda")) == "torch"
    assert speed.resolve_dropout_mask("auto", True, torch.device("cpu")) == "bits"


def test_fast_results_written_before_masks_were_recorded_read_as_torchs(tmp_path):
    study = design.studies()["09"]
    table = collect.read_study("09_fast_mode_validation")
    old = tmp_path / study.csv_name
    table.drop(columns="dropout_mask").to_csv(old, index=False)
    from ecmlib.studies.results import read_results
    got = read_results(old, study.cells, collect.columns_of(study))
    assert list(got.columns) == list(table.columns) and set(got["dropout_mask"]) == {"torch"}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_inputs_hold_bf16_features_time_major(precision):
    """bf16 runs hold the features time-major on the CPU (channels-last convolutions);
    fp32 runs keep them contiguous (the record's kernels); a batch keeps the layout."""
    from ecmlib.method.model import ECMNet, is_channels_last
    from ecmlib.training.step import take_videos, training_inputs
    cfg = make_config("THUMOS14", synthetic="tiny", overrides=[f"train.precision={precision}"])
    model = ECMNet(cfg.model)
    x = torch.rand(6, cfg.model.feat_dim, 20, generator=torch.Generator().manual_seed(0))
    held, grouped = training_inputs(model, x, cfg)
    assert grouped is not None                       # tiny's model aggregates the features
    assert is_channels_last(held) == (precision == "bf16")
    assert torch.equal(held.float(), x.to(held.dtype).float())
    idx = torch.tensor([4, 0, 5])
    batch = take_videos(held, idx)
    assert torch.equal(batch, held[idx]) and is_channels_last(batch) == is_channels_last(held)
    assert torch.equal(take_videos(grouped, idx), grouped[idx])


def test_cuda_math_sets_fp32_flags_on_a_gpu_only_and_restores_them():
    """The settings are plain attributes, so this runs without a GPU (tests/test_cuda.py
    checks their effect on one)."""
    before = speed.cuda_flags()
    record = speed.cuda_flags(record=True)
    assert before != record  # torch's defaults: cuDNN convolutions in TF32, any algorithm
    assert set(record) >= {"cudnn.deterministic", "cudnn.benchmark"}
    with speed.cuda_math(torch.device("cuda"), "fp32"):
        assert speed.cuda_flags() == record
    assert speed.cuda_flags() == before
    with pytest.raises(KeyError):
        with speed.cuda_math(torch.device("cuda:0"), "fp32"):
            raise KeyError("a failing epoch")
    assert speed.cuda_flags() == before
    for device, precision in [("cuda", "bf16"), ("cpu", "fp32")]:
        with speed.cuda_math(torch.device(device), precision):
            assert speed.cuda_flags() == before
