"""Regression targets for the probe, computed from the ego metadata.

* Waypoints: the ego displacement from time ``t`` to ``t + h`` for each horizon
  ``h`` (seconds), expressed in the ego frame at ``t``: ``dx`` forward, ``dy`` to
  the left. World ``x``/``y`` are metres, ``heading`` is radians counter-clockwise
  from the world ``+x`` axis; positions at ``t + h`` are linearly interpolated
  between timestamps. Horizons past the episode's last timestamp are unknown.
* Scalars: ``speed``, ``yaw_rate``, ``lane_offset``, ``steering`` at ``t``.

Unknown values are NaN; a target the data lacks entirely is not built and is
reported as a skipped probe with a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ssltk.probe.frames import Episode, FrameTable

DEFAULT_HORIZONS = (0.5, 1.0, 2.0)
SCALAR_TARGETS = ("speed", "yaw_rate", "lane_offset", "steering")
_EPS = 1e-6


@dataclass
class Targets:
    """Target matrix ``Y[N, K]`` (NaN = unknown) for rows ``(episode, step)``."""

    names: list[str]
    Y: np.ndarray
    waypoint_cols: list[tuple[int, int]] = field(default_factory=list)  # (dx col, dy col) per horizon
    horizons: tuple[float, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)  # probe -> why


def waypoint_names(horizons: Sequence[float]) -> list[str]:
    return [f"{axis}@{h:g}s" for h in horizons for axis in ("dx", "dy")]


def future_displacement(ep: Episode, horizons: Sequence[float]) -> np.ndarray:
    """``[n_steps, 2 * len(horizons)]``: (dx, dy) per horizon in the ego frame at each step (NaN if unknown)."""
    n = len(ep.steps)
    out = np.full((n, 2 * len(horizons)), np.nan)
    if not all(k in ep.ego for k in ("x", "y", "heading")):
        return out
    x, y, head, ts = ep.ego["x"], ep.ego["y"], ep.ego["heading"], ep.timestamps
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return out
    tk, xk, yk = ts[ok], x[ok], y[ok]
    c, s = np.cos(head), np.sin(head)
    for j, h in enumerate(horizons):
        tf = ts + h
        fx, fy = np.interp(tf, tk, xk), np.interp(tf, tk, yk)
        wx, wy = fx - x, fy - y
        dx, dy = c * wx + s * wy, -s * wx + c * wy
        valid = (tf <= tk[-1] + _EPS) & ok & np.isfinite(head)
        out[valid, 2 * j] = dx[valid]
        out[valid, 2 * j + 1] = dy[valid]
    return out


def build_targets(
    table: FrameTable,
    rows: Sequence[tuple[str, int]],
    horizons: Sequence[float] = DEFAULT_HORIZONS,
    scalars: Sequence[str] = SCALAR_TARGETS,
) -> Targets:
    """Targets for ``rows`` = ``(episode, timestep)``; fields the data lacks become skip notes."""
    fields = set(table.ego_fields)
    names: list[str] = []
    cols: list[np.ndarray] = []
    skipped: dict[str, str] = {}
    wp_cols: list[tuple[int, int]] = []
    per_ep = {}
    missing_xy = [k for k in ("x", "y", "heading") if k not in fields]
    if missing_xy:
        skipped["waypoints"] = f"skipped: the data has no ego {', '.join(missing_xy)}"
    elif horizons:
        per_ep = {name: future_displacement(ep, horizons) for name, ep in table.episodes.items()}
        wp = np.stack([per_ep[e][table.episodes[e].index_of(s)] for e, s in rows]) if rows else np.zeros((0, 2 * len(horizons)))
        for j, name in enumerate(waypoint_names(horizons)):
            names.append(name)
            cols.append(wp[:, j])
        wp_cols = [(2 * j, 2 * j + 1) for j in range(len(horizons))]
    for target in scalars:
        if target not in fields:
            skipped[target] = f"skipped: the data has no ego {target}"
            continue
        names.append(target)
        cols.append(np.array([table.episodes[e].ego[target][table.episodes[e].index_of(s)] for e, s in rows], dtype=np.float64))
    Y = np.stack(cols, axis=1) if cols else np.zeros((len(rows), 0))
    return Targets(names=names, Y=Y, waypoint_cols=wp_cols, horizons=tuple(horizons) if wp_cols else (), skipped=skipped)
