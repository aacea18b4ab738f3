"""Turn per-seed metrics into the probe's result rows (the content of ``probe.json``).

Each row is one ``(probe, metric)`` with, per column (``bundle``,
``random_init``, ``raw_pixels``, ``ego_status``, ``compare:*``), the value for
every seed and its mean, sample standard deviation, min and max. Judgements:

* ``best_baseline``: the baseline column (random init, raw pixels, ego status,
  whichever the row has) with the best mean; ``delta_vs_best`` = bundle mean −
  its mean (positive = the bundle is better, whatever the metric's direction);
* ``verdict``: ``"beats"`` when the bundle's worst seed is better than every
  baseline's best seed, ``"behind"`` when the best baseline's worst seed is
  better than the bundle's best, else ``"within"`` (the seeds' spreads overlap);
  None with one seed (no spread to judge by);
* ``delta_vs_random_init`` = bundle mean − random-init mean, with
  ``within_noise`` true when the two min–max ranges over seeds overlap;
* a target that no image column predicts (mean R² ≤ 0 for all, raw pixels
  included; the ego-status baseline sees no image and does not count) is marked
  ``not_observable``: the frames do not show it, so a low score is no loss of the
  bundle's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

FORMAT = "ssltk-probe"
FORMAT_VERSION = 2
HIGHER_IS_BETTER = {"R²": True, "top-1": True, "R@1": True, "R@5": True, "R@10": True, "ADE (m)": False, "mean rank": False}
NOT_AN_IMAGE = ("ego_status",)  # columns that see no frame: they never make a target observable
NOT_OBSERVABLE = "not observable from these frames (R² ≤ 0 for every model, raw pixels too)"


def _clean(v: Any) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def stats(values: list[float | None]) -> dict[str, float | None]:
    """Mean, sample std (0 for one value), min and max of the finite values (None if there are none)."""
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if not len(v):
        return {"mean": None, "std": None, "min": None, "max": None}
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "min": float(v.min()), "max": float(v.max())}


def _group(probe: str) -> int:
    if probe.startswith("waypoints"):
        return 0
    if probe.startswith(("dx@", "dy@")):
        return 1
    if probe.startswith("temporal"):
        return 3
    if probe.startswith("cross-camera"):
        return 4
    return 2


def _base(probe: str) -> tuple[str, str]:
    """``("speed", " [t]")`` from ``"speed [t]"``: the target and its input-variant suffix."""
    name, _, rest = probe.partition(" [")
    return name, (" [" + rest if rest else "")


def _row(key, columns, per_seed, seeds, notes, baselines) -> dict[str, Any]:
    probe, metric = key
    values = {c: [_clean(per_seed[s][0][c].get(key)) for s in seeds] for c in columns}
    summary = {c: stats(values[c]) for c in columns}
    higher = HIGHER_IS_BETTER.get(metric, True)
    row: dict[str, Any] = {
        "probe": probe,
        "metric": metric,
        "kind": "retrieval" if _group(probe) >= 3 else "regression",
        "higher_is_better": higher,
        "per_seed": values,
        "summary": summary,
        "best_baseline": None,
        "delta_vs_best": None,
        "verdict": None,
        "delta_vs_random_init": None,
        "within_noise": None,
        "note": notes.get(key, ""),
        "not_observable": False,
    }
    b, r = summary.get("bundle"), summary.get("random_init")
    if b and r and b["mean"] is not None and r["mean"] is not None:
        row["delta_vs_random_init"] = b["mean"] - r["mean"]
        row["within_noise"] = bool(b["min"] <= r["max"] and r["min"] <= b["max"]) if len(seeds) > 1 else None
    _judge(row, b, {c: summary[c] for c in baselines if c in summary and summary[c]["mean"] is not None}, len(seeds))
    return row


def _judge(row: dict[str, Any], b: dict | None, base: dict[str, dict], n_seeds: int) -> None:
    """Fill ``best_baseline``, ``delta_vs_best`` and ``verdict`` (see the module docstring)."""
    if not base:
        return
    sign = 1.0 if row["higher_is_better"] else -1.0
    best = max(base, key=lambda c: sign * base[c]["mean"])
    row["best_baseline"] = best
    if not b or b["mean"] is None:
        return
    row["delta_vs_best"] = sign * (b["mean"] - base[best]["mean"])
    if n_seeds < 2:
        return
    worst_b, best_b = (b["min"], b["max"]) if sign > 0 else (b["max"], b["min"])
    if all(sign * (worst_b - (s["max"] if sign > 0 else s["min"])) > 0 for s in base.values()):
        row["verdict"] = "beats"
    elif sign * ((base[best]["min"] if sign > 0 else base[best]["max"]) - best_b) > 0:
        row["verdict"] = "behind"
    else:
        row["verdict"] = "within"


def _mark_not_observable(rows: list[dict[str, Any]]) -> None:
    unobservable = set()
    for row in rows:
        if row["metric"] != "R²":
            continue
        means = [s["mean"] for c, s in row["summary"].items() if s["mean"] is not None and c not in NOT_AN_IMAGE]
        if means and max(means) <= 0.0:
            row["not_observable"] = True
            row["note"] = NOT_OBSERVABLE
            unobservable.add(row["probe"])
    for row in rows:  # waypoint ADE: not observable when no displacement component is
        if row["metric"] == "ADE (m)":
            suffix = _base(row["probe"])[1]
            comps = [r for r in rows if r["metric"] == "R²" and _group(r["probe"]) == 1 and _base(r["probe"])[1] == suffix]
            if comps and all(r["probe"] in unobservable for r in comps):
                row["not_observable"] = True
                extra = f"; {row['note']}" if row["note"] else ""
                row["note"] = "not observable from these frames (no dx/dy has R² > 0)" + extra


def assemble(
    per_seed: dict[int, tuple[dict[str, dict], dict]],
    *,
    columns: list[str],
    skipped: list[dict[str, str]],
    meta: dict[str, Any],
    baselines: list[str] | None = None,
) -> dict[str, Any]:
    """The full result: rows sorted by probe family, skipped probes with reasons, and ``meta``."""
    seeds = list(per_seed)
    keys: list[tuple[str, str]] = []
    for s in seeds:
        for col in columns:
            for k in per_seed[s][0][col]:
                if k not in keys:
                    keys.append(k)
    notes: dict = {}
    for s in seeds:
        for k, v in per_seed[s][1].items():
            notes.setdefault(k, v)
    order = {k: i for i, k in enumerate(keys)}
    keys = sorted(keys, key=lambda k: (_group(k[0]), order[k]))
    rows, skipped = [], list(skipped)
    for key in keys:
        row = _row(key, columns, per_seed, seeds, notes, [c for c in (baselines or []) if c in columns])
        if all(s["mean"] is None for s in row["summary"].values()):
            skipped.append({"probe": f"{key[0]} ({key[1]})", "reason": "skipped: not enough frames in the probe data for it"})
            continue
        rows.append(row)
    _mark_not_observable(rows)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "seeds": seeds,
        "columns": columns,
        "baselines": [c for c in (baselines or []) if c in columns],
        "rows": rows,
        "skipped": skipped,
        **meta,
    }
