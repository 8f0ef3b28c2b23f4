"""The training/evaluation runner: run directory, determinism, resume, checkpoints, errors."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch

from ecmlib.cli import main
from ecmlib.method.model import ECMNet, ModelConfig
from ecmlib.data.synthetic import generate, get_spec, write_dataset
from ecmlib.training.setup import load_data, make_config, resolve_device
from ecmlib.training.checkpoint import save_checkpoint
from ecmlib.training.train import train


@pytest.fixture(scope="module")
def tiny_cfg():
    return make_config("THUMOS14", synthetic="tiny", epochs=2,
                       overrides=["eval_every=1", "batch_size=16"])


@pytest.fixture(scope="module")
def tiny_data(tiny_cfg):
    return load_data(tiny_cfg)


@pytest.fixture(scope="module")
def tiny_run(tiny_cfg, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    return train(tiny_cfg, data=tiny_data, out_dir=out, progress=False, log=None)


def test_run_directory_contents(tiny_run) -> None:
    run = tiny_run.run_dir
    for name in ("config.json", "history.csv", "history.json", "metrics.json", "best.pth",
                 "last.pth", "result.json", "result.txt"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("mAP@0.1", "mAP@0.5", "mAP@0.9", "average_mAP@0.1:0.5", "average_mAP@0.1:0.7",
                "average_mAP@0.1:0.9", "best_epoch", "wall_time_s", "classification_mAP"):
        assert key in metrics, key
    assert metrics["best_epoch"] in (1, 2)
    avg = np.mean([metrics[f"mAP@{t:g}"] for t in np.linspace(0.1, 0.7, 7)])
    assert metrics["average_mAP@0.1:0.7"] == pytest.approx(avg)
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert {"loss_pre", "loss_post", "loss_eq", "loss_agg", "loss_total", "lr"} <= set(history[0])
    ckpt = torch.load(run / "best.pth", weights_only=True)  # ours are weights-only safe
    assert {"epoch", "state_dict", "optimizer"} <= set(ckpt)
    assert set(ckpt["state_dict"]) == {
        "base_module.conv_1.weight", "base_module.conv_1.bias", "base_module.conv_2.weight",
        "base_module.conv_2.bias", "classifier_module.conv.weight",
        "attention_module.conv_1.weight", "attention_module.conv_1.bias"}
    result = json.loads((run / "result.json").read_text())
    assert set(result) >= {"version", "results"}


def test_same_seed_repeats_exactly(tiny_cfg, tiny_data, tiny_run) -> None:
    again = train(tiny_cfg, data=tiny_data, progress=False, log=None)
    drop = ("train_time_s", "eval_time_s")
    strip = lambda h: [{k: v for k, v in r.items() if k not in drop} for r in h]  # noqa: E731
    assert strip(again.history) == strip(tiny_run.history)


def test_a_different_seed_changes_the_run(tiny_cfg, tiny_data, tiny_run) -> None:
    other = train(tiny_cfg.with_overrides(["train.seed=3"]), data=tiny_data, progress=False, log=None)
    assert other.history[0]["loss_total"] != tiny_run.history[0]["loss_total"]


def test_existing_run_dir_is_not_overwritten(tiny_cfg, tiny_data, tiny_run) -> None:
    before = (tiny_run.run_dir / "metrics.json").read_bytes()
    with pytest.raises(FileExistsError, match="already holds results"):
        train(tiny_cfg, data=tiny_data, out_dir=tiny_run.run_dir, progress=False, log=None)
    assert (tiny_run.run_dir / "metrics.json").read_bytes() == before


def test_resume_continues_the_same_run(tiny_cfg, tiny_data, tiny_run, tmp_path) -> None:
    one = train(tiny_cfg.with_overrides(["train.epochs=1"]), data=tiny_data,
                out_dir=tmp_path / "one", progress=False, log=None)
    two = train(tiny_cfg, data=tiny_data, out_dir=tmp_path / "two", progress=False, log=None,
                resume=one.run_dir / "last.pth")
    assert [r["epoch"] for r in two.history] == [1, 2]
    assert two.history[1]["loss_total"] == pytest.approx(tiny_run.history[1]["loss_total"], rel=1e-5)


def test_failed_save_keeps_the_previous_checkpoint(tiny_run, monkeypatch, tmp_path) -> None:
    path = tmp_path / "best.pth"
    model = ECMNet(tiny_run.config.model)
    save_checkpoint(path, model, None, epoch=1)
    good = path.read_bytes()

    def disk_full(obj, fh, *a, **k):
        fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(RuntimeError, match="saving the checkpoint failed.*intact"):
        save_checkpoint(path, model, None, epoch=2)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["best.pth"]   # no temp file left


def test_cuda_requested_but_absent() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_eval_of_an_official_checkpoint_and_a_mismatched_one(tiny_cfg, tmp_path, capsys) -> None:
    # An official-format checkpoint as the authors' code writes it: only the three keys.
    torch.manual_seed(0)
    model = ECMNet(tiny_cfg.model)
    official = tmp_path / "THUMOS14_best.pth"
    torch.save({"epoch": 7, "state_dict": model.state_dict(), "optimizer": {}}, official)
    args = ["eval", "--dataset", "THUMOS14", "--synthetic", "tiny", "--weight-file", str(official),
            "--set", "hidden_dim=32"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "mAP" in out and "0.5" in out
    assert (tmp_path / "THUMOS14_best_result.json").is_file()
    assert (tmp_path / "THUMOS14_best_result.txt").is_file()
    assert main(args) == 2                      # results exist: not overwritten silently
    assert "--overwrite" in capsys.readouterr().err
    wrong = ECMNet(ModelConfig(feat_dim=32, hidden_dim=32, num_classes=5, num_snippets=64))
    bad = tmp_path / "other.pth"
    torch.save({"epoch": 1, "state_dict": wrong.state_dict(), "optimizer": {}}, bad)
    assert main(["eval", "--synthetic", "tiny", "--weight-file", str(bad), "--set", "hidden_dim=32"]) == 2
    assert "num_classes is 5 in the checkpoint but 20 in the config" in capsys.readouterr().err


def test_cli_train_on_128d_official_layout(tmp_path, capsys) -> None:
    """`--set feat_dim=128 num_snippets=128 hidden_dim=128` on 128-d, 128-snippet npz files."""
    spec = get_spec("tiny").replace(name="tiny128", feat_dim=128, num_snippets=128,
                                    max_train=12, max_test=8)
    root = write_dataset(spec, tmp_path / "features")
    out = tmp_path / "run"
    rc = main(["train", "--dataset", "THUMOS14", "--data-root", str(root), "--epochs", "1",
               "--set", "feat_dim=128", "num_snippets=128", "hidden_dim=128",
               "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["feat_dim"] == 128 and cfg["model"]["num_snippets"] == 128
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data_source"] == "real features" and metrics["test_videos"] == 8
    # Wrong width for these files: a clear error, not a shape traceback.
    rc = main(["train", "--data-root", str(root), "--epochs", "1", "--out", str(tmp_path / "r2")])
    assert rc == 2
    assert "128" in capsys.readouterr().err


def test_no_data_at_the_path(tmp_path, capsys) -> None:
    assert main(["train", "--data-root", str(tmp_path / "nothing"), "--epochs", "1",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "nothing" in err


def test_activitynet_preset_end_to_end(tmp_path) -> None:
    spec = get_spec("anet12-mini").replace(name="anet12-test", max_train=40, max_test=20,
                                           feat_dim=32, latent_dim=16)
    sets = generate(spec, seed=0)
    cfg = make_config("ActivityNet1.2", epochs=1,
                      overrides=["feat_dim=32", "hidden_dim=32", "eval_every=1"])
    res = train(cfg, data=(sets["training"], sets["validation"]), out_dir=tmp_path / "anet",
                progress=False, log=None)
    m = res.metrics
    assert m["selection_metric"] == "average_mAP@0.5:0.95"
    assert "average_mAP@0.5:0.95" in m and "mAP@0.95" in m and "mAP@0.1" not in m
    assert cfg.localize.time_unit == "duration" and cfg.train.batch_size == 128


def test_bad_data_leaves_no_empty_run_folder(tmp_path):
    from ecmlib.training.setup import make_config
    from ecmlib.training.train import train
    empty_root = tmp_path / "features"
    empty_root.mkdir()
    cfg = make_config("THUMOS14", data_root=str(empty_root))
    out = tmp_path / "run"
    with pytest.raises((ValueError, FileNotFoundError)):
        train(cfg, out_dir=out, progress=False, log=None)
    assert not out.exists()
    # A folder the user made beforehand is not removed.
    out.mkdir()
    with pytest.raises((ValueError, FileNotFoundError)):
        train(cfg, out_dir=out, progress=False, log=None)
    assert out.is_dir()
