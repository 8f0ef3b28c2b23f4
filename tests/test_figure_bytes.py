"""Figures are byte-identical when their data are (issue 9, part 3).

A figure with strip-plot jitter (the 01 feature statistics figure) is rendered and saved
through ``plots.save_figure`` in two fresh Python processes whose global numpy RNG differs;
the PNG and SVG bytes must be identical, and neither file may carry a date.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

RENDER = r"""
import sys
import matplotlib
matplotlib.use("Agg")
import numpy as np
import pandas as pd
from ecmlib.views import plots as P
from ecmlib.data import stats as S
from ecmlib.data.features import FeatureSet

np.random.seed(int(sys.argv[2]))  # a different global RNG state in each process
np.random.random(int(sys.argv[2]) % 7 + 1)

def feature_set(source, seed):
    rng = np.random.default_rng(seed)
    feats = np.maximum(rng.normal(size=(6, 8, 20)), 0).astype(np.float32)
    return FeatureSet(dataset="Hand", split="test", classes=["a", "b", "c"],
                      names=[f"v{i}" for i in range(6)], features=feats,
                      labels=np.eye(3, dtype=np.float32)[np.arange(6) % 3],
                      frame_num=np.full(6, 250), fps=np.full(6, 25.0),
                      duration=np.full(6, 10.0), source=source)

def gt(name):
    return {"dataset": name, "classes": ["a", "b", "c"], "database": {
        f"v{i}": {"subset": "test", "duration": 10.0, "annotations": [
            {"segment": [1.0 + 0.3 * i, 4.0], "label": "abc"[i % 3]}]} for i in range(6)}}

sets = [feature_set("real", 0), feature_set("synthetic", 1)]
norms = pd.concat([S.snippet_norms(fs) for fs in sets], ignore_index=True)
fgbg = pd.concat([S.foreground_background_norms(fs, gt(fs.source)) for fs in sets],
                 ignore_index=True)
P.use_theme()
fig = P.plot_feature_overview(norms, fgbg)
P.save_figure(fig, "01_feature_statistics", sys.argv[1])
"""


def _render(out: Path, seed: int) -> dict[str, bytes]:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONHASHSEED": str(seed)}
    env.pop("SOURCE_DATE_EPOCH", None)  # the bytes must not depend on it
    subprocess.run([sys.executable, "-c", RENDER, str(out), str(seed)], cwd=REPO, env=env,
                   check=True, timeout=300)
    return {ext: (out / f"01_feature_statistics.{ext}").read_bytes() for ext in ("png", "svg")}


def test_jittered_figure_is_byte_identical_across_processes(tmp_path):
    first = _render(tmp_path / "a", 1)
    second = _render(tmp_path / "b", 12345)
    for ext in ("png", "svg"):
        assert first[ext] == second[ext], f"01_feature_statistics.{ext} differs between runs"
    svg = first["svg"]
    assert b"<dc:date>" not in svg
    png = first["png"]
    assert b"tIME" not in png and b"Software" not in png and b"Creation Time" not in png


def test_strip_jitter_is_seeded_not_global():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    from ecmlib.views import plots as P

    fgbg = pd.DataFrame({"source": ["real"] * 8 + ["synthetic"] * 8,
                         "region": (["foreground"] * 4 + ["background"] * 4) * 2,
                         "mean_norm": np.linspace(1.0, 2.0, 16)})

    def dots(seed):
        ax = P.plot_foreground_background(fgbg, jitter_seed=seed)
        out = [np.asarray(c.get_offsets()).copy() for c in ax.collections if len(c.get_offsets())]
        plt.close(ax.figure)
        return out

    np.random.seed(1)
    a = dots(0)
    np.random.seed(2)  # the global RNG does not matter
    b, c = dots(0), dots(1)
    assert len(a) == 4 and all(len(x) == 4 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    for x, centre in zip(a, (-0.2, 0.2, 0.8, 1.2)):  # (real, synthetic) x (fg, bg), dodged
        assert np.all(np.abs(x[:, 0] - centre) <= 0.1 + 1e-9), (x[:, 0], centre)
        assert np.unique(x[:, 0]).size == 4  # jittered, not stacked
