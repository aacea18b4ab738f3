"""Turn per-seed metrics into the probe's result rows (the content of ``probe.json``).

Each row is one ``(probe, metric)`` with, per column (``bundle``,
``random_init``, ``raw_pixels``, ``compare:*``), the value for every seed and
its mean, sample standard deviation, min and max. Two judgements are added:

* ``delta_vs_random_init`` = bundle mean − random-init mean, with
  ``within_noise`` true when the two min–max ranges over seeds overlap;
* a target that no column predicts (mean R² ≤ 0 for all, raw pixels included)
  is marked ``not_observable``: the frames do not show it, so a low score is no
  loss of the bundle's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

FORMAT = "ssltk-probe"
FORMAT_VERSION = 1
HIGHER_IS_BETTER = {"R²": True, "top-1": True, "ADE (m)": False, "mean rank": False}
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


def _row(key, columns, per_seed, seeds, notes) -> dict[str, Any]:
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
        "delta_vs_random_init": None,
        "within_noise": None,
        "note": notes.get(key, ""),
        "not_observable": False,
    }
    b, r = summary.get("bundle"), summary.get("random_init")
    if b and r and b["mean"] is not None and r["mean"] is not None:
        row["delta_vs_random_init"] = b["mean"] - r["mean"]
        row["within_noise"] = bool(b["min"] <= r["max"] and r["min"] <= b["max"]) if len(seeds) > 1 else None
    return row


def _mark_not_observable(rows: list[dict[str, Any]]) -> None:
    unobservable = set()
    for row in rows:
        if row["metric"] != "R²":
            continue
        means = [s["mean"] for s in row["summary"].values() if s["mean"] is not None]
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
        row = _row(key, columns, per_seed, seeds, notes)
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
        "rows": rows,
        "skipped": skipped,
        **meta,
    }
