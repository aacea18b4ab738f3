"""Turn one episode segment into training samples, as a :class:`~ssltk.views.ViewPlan` asks.

Works on raw bytes: it chooses the timesteps and cameras first and keeps only
the image bytes those need, so the decoder later touches nothing else
(``docs/views.md``).

For each sample:

1. every Δt slot draws its offset uniformly from its range (frames: an integer
   number of stored timesteps; seconds: a real number, matched to the frame
   whose timestamp is nearest, within half a frame interval);
2. the anchor ``t`` is drawn uniformly among the timesteps whose partners all
   fall inside the segment;
3. if no anchor can hold every partner (a segment shorter than the drawn Δt,
   or a gap in the timestamps), ``t`` is drawn uniformly from the whole segment
   and each partner that does not fit is *invalid*: ``mask`` False and frames
   zero, while ``frame_index``, ``timestamp`` and ``dt`` hold the *intended*
   partner (anchor + the drawn Δt), finite values that no objective should use
   without the mask. A partner is never replaced by another frame.

A frame the data lacks (listed in the segment's ``missing``, a camera the
segment does not have, or a field absent from the sample) is masked False.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ssltk.data.shards.format import SegmentMeta
from ssltk.errors import UnknownNameError, UsageError
from ssltk.views import DeltaRange, ViewPlan

__all__ = ["SegmentSampler", "RawView", "check_plan_fits", "frame_interval"]

FrameRef = tuple[int, str]  # (local timestep, camera)


@dataclass
class RawView:
    """One sample before decoding: which frame fills each ``[slot][camera]`` cell, and its bytes."""

    key: str
    url: str
    episode: str
    refs: list[list[FrameRef | None]]  # [T][V]; None = masked
    images: dict[FrameRef, bytes]  # bytes of every ref that is not None (decoded once each)
    frame_index: list[int]  # [T]
    timestamp: list[float]  # [T]
    dt: list[float]  # [T]
    ego: dict[str, list[float]]  # field -> [T] (NaN unknown)


def frame_interval(meta: SegmentMeta) -> float | None:
    """Typical seconds between timesteps: median timestamp difference, else ``1 / fps``."""
    if meta.length >= 2:
        ts = [math.nan if t is None else float(t) for t in meta.timestamps]  # NaN never counts below
        # plain Python: numpy's median costs ~30 µs per call, once per segment read (a few % of the loader)
        diffs = [b - a for a, b in zip(ts, ts[1:]) if b > a]
        if diffs:
            return float(statistics.median(diffs))
    return 1.0 / meta.fps if meta.fps else None


def _max_offset(delta: DeltaRange, meta: SegmentMeta) -> int:
    if delta.unit == "frames":
        return int(delta.hi)
    step = frame_interval(meta)
    if step is None:
        raise UsageError(f"Δt {delta.label} is in seconds but segment {meta.episode}/{meta.start} has no fps or timestamps")
    return int(math.floor(delta.hi / step + 0.5))


def check_plan_fits(
    plan: ViewPlan,
    meta: SegmentMeta,
    *,
    cameras: Sequence[str] | None = None,
    segment_length: int | None = None,
    where: str = "",
) -> None:
    """Raise a clear error at startup if the data cannot serve ``plan``.

    * every plan camera must be one of the data's ``cameras`` (default ``meta.cameras``);
    * every Δt must fit in a stored segment: ``max Δt <= segment_length - 1``
      (default ``meta.length``); Δt in seconds is converted with ``meta``'s frame interval.
    """
    data_cameras = list(cameras if cameras is not None else meta.cameras)
    for cam in plan.cameras:
        if cam not in data_cameras:
            raise UnknownNameError("camera", cam, data_cameras, "cameras in the data")
    length = segment_length or meta.length
    for delta in plan.deltas:
        if delta is None:
            continue
        need = _max_offset(delta, meta)
        if need > length - 1:
            unit = "" if delta.unit == "frames" else f" (= {need} timesteps at {1 / frame_interval(meta):g} fps)"
            raise UsageError(
                f"Δt {delta.label}{unit} needs segments of at least {need + 1} timesteps, but the data's segments have "
                f"{length}{where}; re-pack the shards with longer segments (or more overlap) or ask for a smaller Δt"
            )


class SegmentSampler:
    """Draws ``(anchor, partners)`` timesteps from segments and gathers their raw frames.

    ``ego_fields``: the ego keys every sample carries (NaN where a segment lacks
    a field or a value), so all samples of a batch share one layout.
    """

    def __init__(self, plan: ViewPlan, ego_fields: Sequence[str] = ()) -> None:
        self.plan = plan
        self.cameras = list(plan.cameras)
        self.ego_fields = list(ego_fields)
        self.delta_slots = [(i, d) for i, d in enumerate(plan.deltas) if d is not None]

    # -- timesteps ---------------------------------------------------------
    def _partners(
        self, delta: DeltaRange, ts: np.ndarray, step: float | None, rng: random.Random
    ) -> tuple[np.ndarray, tuple[int, float]]:
        """Draw Δt; return every anchor's partner timestep (-1 where none fits) and Δt as (frames, seconds)."""
        n = ts.size
        anchors = np.arange(n)
        if delta.unit == "frames":
            d = rng.randint(int(delta.lo), int(delta.hi))
            partner = anchors + d
            partner[partner >= n] = -1
            return partner, (d, d * (step or 0.0))
        d = rng.uniform(delta.lo, delta.hi)
        intended = (int(round(d / step)) if step else 0, d)
        if step is None or n < 2:
            return np.full(n, -1), intended
        target = ts + d
        hi = np.clip(np.searchsorted(ts, target), 1, n - 1)
        lo = hi - 1
        partner = np.where(np.abs(ts[lo] - target) <= np.abs(ts[hi] - target), lo, hi)
        ok = (partner > anchors) & (np.abs(ts[partner] - target) <= 0.5 * step + 1e-6)
        return np.where(ok, partner, -1), intended

    def draw_offsets(
        self, meta: SegmentMeta, rng: random.Random, prepared: tuple[np.ndarray, float | None] | None = None
    ) -> tuple[list[int | None], list[tuple[int, float]]]:
        """Local timestep per plan slot (``None`` = the partner does not fit) and each slot's drawn Δt.

        ``prepared``: ``(timestamps array, frame interval)`` of ``meta``, computed once per segment.
        """
        ts, step = prepared or (np.asarray(meta.timestamps, dtype=np.float64), frame_interval(meta))
        n = ts.size
        steps: list[int | None] = [0] * len(self.plan.slots)
        offsets: list[tuple[int, float]] = [(0, 0.0)] * len(self.plan.slots)
        if all(d.unit == "frames" for _, d in self.delta_slots):  # fast path: no arrays needed
            ds = [rng.randint(int(d.lo), int(d.hi)) for _, d in self.delta_slots]
            reach = max(ds, default=0)
            t = rng.randrange(n - reach) if reach < n else rng.randrange(n)
            steps = [t] * len(self.plan.slots)
            for (slot, _), d in zip(self.delta_slots, ds):
                steps[slot] = t + d if t + d < n else None
                offsets[slot] = (d, d * (step or 0.0))
            return steps, offsets
        drawn = [self._partners(d, ts, step, rng) for _, d in self.delta_slots]
        ok = np.ones(n, dtype=bool)
        for p, _ in drawn:
            ok &= p >= 0
        candidates = np.flatnonzero(ok)
        t = int(candidates[rng.randrange(candidates.size)]) if candidates.size else rng.randrange(n)
        steps = [t] * len(self.plan.slots)
        for (slot, _), (p, intended) in zip(self.delta_slots, drawn):
            steps[slot] = int(p[t]) if p[t] >= 0 else None
            offsets[slot] = intended
        return steps, offsets

    def draw(self, meta: SegmentMeta, rng: random.Random) -> list[int | None]:
        """Local timestep per plan slot (``None`` = the partner does not fit)."""
        return self.draw_offsets(meta, rng)[0]

    # -- frames ------------------------------------------------------------
    def gather(
        self,
        meta: SegmentMeta,
        sample: Mapping[str, Any],
        steps: list[int | None],
        offsets: Sequence[tuple[int, float]] | None = None,
    ) -> RawView:
        """The :class:`RawView` for ``steps``: refs, raw bytes, indices, times and ego values.

        ``offsets`` (drawn Δt per slot, frames and seconds) fill the indices and
        times of slots whose partner does not fit (``steps[i] is None``).
        """
        refs: list[list[FrameRef | None]] = []
        images: dict[FrameRef, bytes] = {}
        for i in steps:
            row: list[FrameRef | None] = []
            for cam in self.cameras:
                data = sample.get(f"f{i:03d}.{cam}.{meta.ext}") if i is not None and meta.has_frame(i, cam) else None
                if data is None:
                    row.append(None)
                else:
                    images[(i, cam)] = data
                    row.append((i, cam))
            refs.append(row)
        t0 = steps[0]
        f0, ts0 = int(meta.frames[t0]), float(meta.timestamps[t0])
        offsets = offsets or [(0, 0.0)] * len(steps)
        dt = [float(meta.timestamps[i]) - ts0 if i is not None else float(off[1]) for i, off in zip(steps, offsets)]
        return RawView(
            key=sample.get("__key__", ""),
            url=sample.get("__url__", ""),
            episode=meta.episode,
            refs=refs,
            images=images,
            frame_index=[int(meta.frames[i]) if i is not None else f0 + off[0] for i, off in zip(steps, offsets)],
            timestamp=[ts0 + d for d in dt],
            dt=dt,
            ego={f: [_ego_value(meta, f, i) for i in steps] for f in self.ego_fields},
        )

    def expand(self, meta: SegmentMeta, sample: Mapping[str, Any], k: int, rng: random.Random) -> list[RawView]:
        """``k`` independent samples from one segment."""
        prepared = (np.asarray(meta.timestamps, dtype=np.float64), frame_interval(meta))
        return [self.gather(meta, sample, *self.draw_offsets(meta, rng, prepared)) for _ in range(k)]


def _ego_value(meta: SegmentMeta, name: str, i: int | None) -> float:
    values = meta.ego.get(name)
    if i is None or values is None or i >= len(values) or values[i] is None:
        return float("nan")
    return float(values[i])
