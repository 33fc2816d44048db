"""The classification benchmark scripts run on small files: benchmarks/classify_long.py keeps only the
cases of at least --min-length steps and prints the LSTM/minGRU ratio; benchmarks/classify_archive.py's
table reads what its runs record."""

import json
import subprocess
import sys

import numpy as np

from _paths import ROOT


def test_long_series_speed_script(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["@problemName toy", "@univariate true", "@equalLength false", "@classLabel true a b", "@data"]
    for i, n in enumerate([30, 45, 12, 50, 8, 33]):  # 4 cases of 30+ steps, 2 shorter ones left out
        lines.append(",".join(f"{v:.3f}" for v in rng.normal(size=n)) + (":a" if i % 2 else ":b"))
    (tmp_path / "toy.ts").write_text("\n".join(lines) + "\n")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "classify_long.py"), "--data",
                           str(tmp_path / "toy.ts"), "--min-length", "30", "--hidden", "8", "--rounds", "2",
                           "--batch", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "4 cases of 30 to 50 steps, 1 dims, 2 classes" in done.stdout
    assert "hidden 8 x 1 layer(s): LSTM" in done.stdout and "ratio LSTM/minGRU" in done.stdout


def test_archive_table(tmp_path):
    rows = [{"set": "GunPoint", "label": "default", "seed": s, "model": "lstm_fcn-lstm", "accuracy": a,
             "dtw": 0.94, "epochs": 150, "train_cpu_s": c, "train_wall_s": c, "load": 2.0, "extra": [],
             "date": "x"} for s, a, c in ((1, 1.0, 40.0), (0, 0.98, 42.5))]
    rows.append({**rows[0], "label": "rocket", "dtw": None, "minirocket": 0.9666})
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "classify_archive.py"), "--out", str(tmp_path),
                           "--table"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "| GunPoint | default | 0,1 | 0.980 / 1.000 | 0.990 | 1-NN DTW 0.940 | 42 | 2.0-2.0 |" in done.stdout
    assert "| GunPoint | rocket | 1 | 1.000 | 1.000 | MiniRocket 0.967 | 40 | 2.0-2.0 |" in done.stdout
