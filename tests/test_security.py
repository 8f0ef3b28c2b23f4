"""No code runs from a checkpoint or a feature file (issue 9, part 1).

Each malicious file carries an object whose ``__reduce__`` creates a marker file when it is
unpickled. A control shows the stock loader does create the marker; ecmlib's loaders (and
the CLI, as a real subprocess) must refuse the file with an error naming it and the refused
class, with no traceback, and the marker must not exist afterwards.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ecmlib.data import features as D
from ecmlib.method.model import ECMNet, ModelConfig
from ecmlib.training.checkpoint import load_checkpoint
from ecmlib.data.safeload import (UnsafeFileError, load_checkpoint_file, load_pickled_array,
                             load_plain_pickle)

REPO = Path(__file__).resolve().parents[1]
REFERENCE_ANN = REPO.parent / "shared" / "reference" / "annotations"
REFUSED = "refused to unpickle an object of class"

try:
    from numpy._core.multiarray import scalar as _numpy_scalar
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import scalar as _numpy_scalar


class TouchMarker:
    """Unpickling this creates ``marker`` (pathlib.Path.touch, no shell)."""

    def __init__(self, marker: Path):
        self.marker = Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


class ShellMarker:
    """Unpickling this runs a shell command (os.system), the classic payload."""

    def __init__(self, marker: Path):
        self.marker = Path(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class Raw:
    """Pickles as ``func(*args)`` (+ ``state`` via BUILD): hand-made numpy pickles."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _object_array(*items) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):  # one by one: equal shapes must not broadcast
        arr[i] = item
    return arr


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "ecmlib", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _assert_clean_refusal(proc: subprocess.CompletedProcess, path: Path, cls: str,
                          marker: Path) -> None:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert not marker.exists(), "code from the file ran"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert str(path) in proc.stderr and REFUSED in proc.stderr and cls in proc.stderr, proc.stderr


# -- checkpoints --------------------------------------------------------------------------

PAYLOADS = [(ShellMarker, "system"), (TouchMarker, "getattr")]


def _bad_checkpoint(path: Path, payload, marker: Path, legacy: bool = False) -> Path:
    model = ECMNet(ModelConfig(feat_dim=8, hidden_dim=4, num_classes=20, num_snippets=16))
    torch.save({"epoch": 1, "state_dict": model.state_dict(), "optimizer": {},
                "note": payload(marker)}, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("payload,cls", PAYLOADS)
def test_malicious_checkpoint_really_is_malicious(tmp_path, payload, cls):
    """Control: the stock loader runs the payload (so the tests below are not vacuous)."""
    marker = tmp_path / "MARKER"
    bad = _bad_checkpoint(tmp_path / "bad.pth", payload, marker)
    torch.load(bad, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("payload,cls", PAYLOADS)
def test_malicious_checkpoint_is_refused_by_every_loader(tmp_path, payload, cls, legacy):
    marker = tmp_path / "MARKER"
    bad = _bad_checkpoint(tmp_path / "bad.pth", payload, marker, legacy)
    from ecmlib.views.explorer import open_checkpoint
    for load in (load_checkpoint_file, load_checkpoint, open_checkpoint):
        with pytest.raises(UnsafeFileError, match=REFUSED) as err:
            load(bad)
        assert str(bad) in str(err.value) and cls in str(err.value)
        assert isinstance(err.value, ValueError) and isinstance(err.value, D.DataError)
    assert not marker.exists()


def test_malicious_protocol4_checkpoint_is_refused(tmp_path):
    """Pickle protocol 4 (which torch's safe unpickler does not read at all) runs nothing."""
    marker = tmp_path / "MARKER"
    bad = tmp_path / "p4.pth"
    torch.save({"epoch": 1, "x": TouchMarker(marker)}, bad, pickle_protocol=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about the protocol when loading
        with pytest.raises(ValueError, match=r"p4\.pth: cannot read checkpoint"):
            load_checkpoint_file(bad)
    assert not marker.exists()


@pytest.mark.parametrize("payload,cls", PAYLOADS)
def test_cli_eval_refuses_a_malicious_checkpoint(tmp_path, payload, cls):
    marker = tmp_path / "MARKER"
    bad = _bad_checkpoint(tmp_path / "BAD.pth", payload, marker)
    proc = _run_cli("eval", "--dataset", "THUMOS14", "--synthetic", "tiny", "--weight-file",
                    str(bad), "--device", "cpu", cwd=tmp_path)
    _assert_clean_refusal(proc, bad, cls, marker)
    assert not list(tmp_path.glob("BAD_*")), "eval wrote results"


def _adam_state(model: ECMNet) -> dict:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=5e-4)
    for p in model.parameters():  # one step with a fake gradient fills exp_avg / exp_avg_sq
        p.grad = torch.ones_like(p)
    opt.step()
    return opt.state_dict()


def test_authors_checkpoint_format_loads_strictly(tmp_path):
    """The authors' {'epoch', 'state_dict', 'optimizer'} with Adam state, nn.DataParallel keys."""
    cfg = ModelConfig(feat_dim=16, hidden_dim=8, num_classes=20, num_snippets=32)
    model = ECMNet(cfg)
    optim = _adam_state(model)
    path = tmp_path / "authors.pkl"
    state = {f"module.{k}": v for k, v in model.state_dict().items()}  # nn.DataParallel keys
    torch.save({"epoch": 42, "state_dict": state, "optimizer": optim}, path)
    raw = load_checkpoint_file(path)
    assert raw["epoch"] == 42 and raw["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(raw["optimizer"]["state"][0]["exp_avg"], optim["state"][0]["exp_avg"])
    loaded, _ = load_checkpoint(path, cfg)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_ecmlib_checkpoints_are_weights_only_safe(tmp_path):
    """What train() writes (config, history, best, RNG states, Adam) loads with weights_only."""
    from ecmlib.training.setup import make_config
    from ecmlib.training.checkpoint import save_checkpoint
    cfg = make_config("THUMOS14", synthetic="tiny")
    model = ECMNet(cfg.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    gen = torch.Generator().manual_seed(0)
    history = [{"epoch": 1, "lr": 1e-4, "loss_total": 0.5, "mAP@0.5": 0.25}]
    save_checkpoint(tmp_path / "last.pth", model, opt, 1,
                    {"ecmlib_config": cfg.to_dict(), "ecmlib_history": history,
                     "ecmlib_best": {"epoch": 1, "value": 0.25},
                     "ecmlib_rng": {"shuffle": gen.get_state(), "torch": torch.get_rng_state()}})
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "last.pth") == []
    raw = load_checkpoint_file(tmp_path / "last.pth")
    assert raw["ecmlib_history"] == history and raw["ecmlib_config"] == cfg.to_dict()
    assert torch.equal(raw["ecmlib_rng"]["shuffle"], gen.get_state())
    load_checkpoint(tmp_path / "last.pth", cfg.model)


def test_shipped_demo_checkpoint_is_weights_only_safe():
    from ecmlib.views.explorer import DEMO_CHECKPOINT
    assert torch.serialization.get_unsafe_globals_in_checkpoint(DEMO_CHECKPOINT) == []
    raw = load_checkpoint_file(DEMO_CHECKPOINT)
    assert isinstance(raw["ecmlib_provenance"]["torch"], str)


def test_checkpoint_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pth: checkpoint file not found"):
        load_checkpoint_file(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pth"):
        load_checkpoint_file(junk)


# -- pickled W-TALC arrays ------------------------------------------------------------------

def test_malicious_npy_really_is_malicious(tmp_path):
    marker = tmp_path / "MARKER"
    np.save(tmp_path / "bad.npy", _object_array(np.zeros((3, 4), np.float32), TouchMarker(marker)),
            allow_pickle=True)
    np.load(tmp_path / "bad.npy", allow_pickle=True)
    assert marker.exists()


@pytest.mark.parametrize("payload,cls", [(TouchMarker, "pathlib.Path.touch"),
                                         (ShellMarker, "system")])
def test_malicious_npy_is_refused(tmp_path, payload, cls):
    marker = tmp_path / "MARKER"
    bad = tmp_path / "bad.npy"
    np.save(bad, _object_array(np.zeros((3, 4), np.float32), payload(marker)), allow_pickle=True)
    with pytest.raises(UnsafeFileError, match=REFUSED) as err:
        load_pickled_array(bad)
    assert str(bad) in str(err.value) and cls in str(err.value)
    # a bare pickle (np.load(allow_pickle=True) opens those too)
    with open(tmp_path / "bare.npy", "wb") as fh:
        pickle.dump([payload(marker)], fh)
    with pytest.raises(UnsafeFileError, match=REFUSED):
        load_pickled_array(tmp_path / "bare.npy")
    assert not marker.exists()


def _write_wtalc(root: Path, feats_items: list, labels_items: list | None = None) -> Path:
    """The W-TALC THUMOS14 layout (as tests/test_data.py's), two real validation videos."""
    gt = json.loads((REPO / "data" / "thumos14" / "gt.json").read_text())["database"]
    names = [n for n, v in gt.items() if v["subset"] == "train"][:len(feats_items)]
    ann = root / "Thumos14reduced-Annotations"
    ann.mkdir(parents=True)
    np.save(root / "Thumos14reduced-I3D-JOINTFeatures.npy", _object_array(*feats_items),
            allow_pickle=True)
    np.save(ann / "videoname.npy", np.array([n.encode() for n in names]))
    np.save(ann / "subset.npy", np.array([b"validation"] * len(names)))
    if labels_items is not None:
        np.save(ann / "labels_all.npy", _object_array(*labels_items), allow_pickle=True)
    return root


def test_wtalc_reader_refuses_malicious_features(tmp_path):
    marker = tmp_path / "MARKER"
    root = _write_wtalc(tmp_path / "feats",
                        [np.zeros((20, 2048), np.float32), TouchMarker(marker)])
    feat_file = root / "Thumos14reduced-I3D-JOINTFeatures.npy"
    with pytest.raises(D.DataError, match=REFUSED) as err:
        D.load_split(root, "THUMOS14", "val", 750)
    assert str(feat_file) in str(err.value) and "pathlib.Path.touch" in str(err.value)
    assert not marker.exists()


def test_wtalc_reader_refuses_malicious_labels_all(tmp_path):
    marker = tmp_path / "MARKER"
    feats = [np.zeros((20, 2048), np.float32), np.zeros((30, 2048), np.float32)]
    root = _write_wtalc(tmp_path / "feats", feats, [["BaseballPitch"], ShellMarker(marker)])
    with pytest.raises(D.DataError, match=REFUSED) as err:
        D.load_split(root, "THUMOS14", "val", 750)
    assert "labels_all.npy" in str(err.value) and "system" in str(err.value)
    assert not marker.exists()


def test_cli_train_refuses_malicious_features(tmp_path):
    marker = tmp_path / "MARKER"
    root = _write_wtalc(tmp_path / "feats",
                        [np.zeros((20, 2048), np.float32), TouchMarker(marker)])
    proc = _run_cli("train", "--dataset", "THUMOS14", "--data-root", str(root), "--epochs", "1",
                    "--device", "cpu", "--quiet", "--out", str(tmp_path / "run"), cwd=tmp_path)
    _assert_clean_refusal(proc, root / "Thumos14reduced-I3D-JOINTFeatures.npy",
                          "pathlib.Path.touch", marker)


@pytest.mark.parametrize("raw,why", [
    # numpy.ndarray called directly: an object array over attacker bytes (pointers)
    (Raw(np.ndarray, ((1,), "O", b"A" * 8)), "not callable"),
    # a bytes dtype whose state flags it as holding objects
    (Raw(np.dtype, ("S8", False, True), (3, "|", None, None, None, 8, 1, 63)), "state"),
    # a structured dtype
    (Raw(np.dtype, ("V16", False, True)), "structured"),
    # an object-dtype scalar
    (Raw(_numpy_scalar, (np.dtype("O"), b"A" * 8)), "only numeric"),
    # another codec than latin1 (how protocol 2 writes bytes)
    (Raw(__import__("_codecs").encode, ("x", "rot13")), "only latin1"),
])
def test_restricted_unpickler_refuses_unsafe_numpy_calls(tmp_path, raw, why):
    bad = tmp_path / "bad.npy"
    np.save(bad, _object_array(np.zeros(3), raw), allow_pickle=True)
    with pytest.raises(D.DataError, match=why) as err:
        load_pickled_array(bad)
    assert str(bad) in str(err.value)


def test_legit_wtalc_object_arrays_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    feats = _object_array(*(rng.standard_normal((t, 2048)).astype(np.float32) for t in (5, 17, 1)))
    labels = _object_array(["CricketBowling"], ["CricketBowling", "CricketShot"], [])
    segments = _object_array([[1.5, 2.5]], [[0.0, 1.0], [3.0, 4.25]], [])
    mixed = _object_array(np.array(["a", "bc"]), np.array([b"x"]), np.float64(2.5), np.int64(3),
                          np.arange(6, dtype=np.int16).reshape(2, 3), np.array([True, False]))
    for name, arr in {"f": feats, "l": labels, "s": segments, "m": mixed}.items():
        np.save(tmp_path / f"{name}.npy", arr, allow_pickle=True)
        back = load_pickled_array(tmp_path / f"{name}.npy")
        assert back.dtype == object and back.shape == arr.shape
        for a, b in zip(arr, back):
            assert type(a) is type(b)
            if isinstance(a, np.ndarray):
                assert a.dtype == b.dtype and np.array_equal(a, b)
            else:
                assert a == b
    # a Python-2-era protocol-2 pickle (array bytes via _codecs.encode), as in W-TALC's files
    from numpy.lib import format as npy_format
    with open(tmp_path / "p2.npy", "wb") as fh:
        npy_format.write_array_header_1_0(fh, npy_format.header_data_from_array_1_0(feats))
        pickle.dump(feats, fh, protocol=2)
    back = load_pickled_array(tmp_path / "p2.npy")
    assert all(np.array_equal(a, b) for a, b in zip(feats, back))
    # numeric arrays load without the unpickler
    np.save(tmp_path / "plain.npy", np.arange(4.0))
    assert np.array_equal(load_pickled_array(tmp_path / "plain.npy"), np.arange(4.0))


@pytest.mark.skipif(not REFERENCE_ANN.is_dir(), reason="shared reference annotations absent")
def test_real_wtalc_annotation_files_match_numpy(tmp_path):
    """W-TALC's real object arrays read exactly as np.load(allow_pickle=True) reads them."""
    files = sorted(REFERENCE_ANN.glob("*/wtalc_npy/*.npy"))
    assert files
    for f in files:
        ours = load_pickled_array(f)
        ref = np.load(f, allow_pickle=True, encoding="latin1")  # trusted reference files
        assert ours.dtype == ref.dtype and ours.shape == ref.shape, f
        for a, b in zip(ours.flat, ref.flat):
            assert (np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b), f
    for pkl in sorted(REFERENCE_ANN.glob("*/ecm_idx_name_dict.pkl")):
        d = load_plain_pickle(pkl)
        assert sorted(d) == list(range(1, len(d) + 1))
        assert all(isinstance(v, str) for v in d.values())


def test_plain_pickle_admits_no_global(tmp_path):
    good = tmp_path / "ecm_idx_name_dict.pkl"
    with open(good, "wb") as fh:
        pickle.dump({1: "Archery", 2: "Ballet"}, fh, protocol=2)
    assert load_plain_pickle(good) == {1: "Archery", 2: "Ballet"}
    marker = tmp_path / "MARKER"
    bad = tmp_path / "bad.pkl"
    with open(bad, "wb") as fh:
        pickle.dump({1: TouchMarker(marker)}, fh)
    with pytest.raises(UnsafeFileError, match=REFUSED):
        load_plain_pickle(bad)
    with open(bad, "wb") as fh:  # even numpy is not admitted there
        pickle.dump({1: np.float64(1.0)}, fh)
    with pytest.raises(UnsafeFileError, match="numpy"):
        load_plain_pickle(bad)
    assert not marker.exists()
