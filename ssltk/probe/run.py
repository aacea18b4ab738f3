"""``run_probe``: did the bundle learn something useful for driving?

One run reads the probe shards once, encodes the kept frames with every model
(frozen, eval mode), then for each seed splits the episodes into probe-train and
probe-test and runs every probe on every column:

* ``bundle``: the bundle's backbone;
* ``random_init``: the same architecture, randomly initialised with the seed;
* ``raw_pixels``: a ``16 × 16 × 3`` thumbnail;
* ``ego_status``: no image, a ridge from speed, yaw rate and acceleration at
  ``t`` (waypoint and ``dx``/``dy`` rows only);
* ``compare:NAME``: other bundles given with ``compare``.

Without a bundle (``bundle=None``) only the data baselines run (raw pixels,
ego status): is the motion visible in these frames at all?

The result is plain data (what ``probe.json`` holds); :mod:`ssltk.probe.report`
turns it into a table and a chart.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ssltk.errors import UnknownNameError, UsageError
from ssltk.probe.evaluate import (
    VARIANTS,
    Rows,
    cross_camera_probe,
    ego_status_inputs,
    regression_probe,
    temporal_probe,
)
from ssltk.probe.features import READOUTS, ModelExtractor, RawPixels, extract
from ssltk.probe.frames import FrameKey, FrameTable, choose_kept, load_frames
from ssltk.probe.models import BundleInfo, load_bundle, random_init, resolve_device
from ssltk.probe.results import assemble
from ssltk.probe.split import split_episodes
from ssltk.probe.targets import DEFAULT_HORIZONS, build_targets


# 192 runs of 12 frames: the default split's 192 episodes, one run each (see choose_kept).
MAX_FRAMES = 2304
BASELINES = ("random_init", "raw_pixels", "ego_status")


@dataclass
class ProbeOptions:
    """Everything that shapes a probe run besides the models and the data."""

    seeds: tuple[int, ...] = (0, 1)
    max_frames: int = MAX_FRAMES  # anchor-camera frames encoded (per model)
    camera: str | None = None  # anchor camera; default "front" if present, else the first
    inputs: tuple[str, ...] = ("t,t-1",)  # regression input variants
    readout: str = "gap"  # "gap": the pooled output; "grid": the last feature map pooled to 2x2 cells
    run_length: int = 12  # consecutive anchor frames per run (>= max(dts) + 1)
    fit_every: int = 2  # ridge fits on every 2nd probe-train row of an episode (all probe-test rows are scored)
    horizons: tuple[float, ...] = DEFAULT_HORIZONS
    dts: tuple[int, ...] = (1, 5, 10)  # temporal retrieval offsets, in frames
    max_queries: int = 400  # temporal retrieval queries per seed
    max_cross: int = 192  # extra-camera frames encoded per model for cross-camera retrieval (all cameras together)
    test_fraction: float = 0.35  # 192 episodes -> 67 probe-test episodes
    raw_side: int = 16
    batch_size: int = 64

    def check(self) -> None:
        if not self.seeds:
            raise UsageError("give at least one seed")
        for v in self.inputs:
            if v not in VARIANTS:
                raise UnknownNameError("regression input", v, VARIANTS)
        if self.max_frames < 4:
            raise UsageError(f"max_frames must be at least 4, got {self.max_frames}")
        if any(int(d) < 1 for d in self.dts):
            raise UsageError("temporal retrieval offsets must be positive frame counts")
        if self.readout not in READOUTS:
            raise UnknownNameError("readout", self.readout, READOUTS)
        if self.run_length < 2 or self.fit_every < 1:
            raise UsageError(f"run length must be >= 2 and fit_every >= 1, got {self.run_length} and {self.fit_every}")


def resolve_data(data: Any) -> list[str]:
    """Shard paths for ``data``; the default synthetic probe split when ``None``."""
    from ssltk.data.shards.format import resolve_shards

    if data is None:
        try:
            from ssltk.data.synth.cache import default_synthetic_shards
        except ImportError:
            raise UsageError("no --data given and no built-in synthetic data in this install; pass --data SHARDS") from None
        data = default_synthetic_shards("probe")
    return resolve_shards(data)


def pick_camera(table: FrameTable, camera: str | None) -> str:
    if camera is not None:
        if camera not in table.cameras:
            raise UnknownNameError("camera", camera, table.cameras, hint="cameras in the probe data")
        return camera
    return "front" if "front" in table.cameras else table.cameras[0]


def cross_pools(table: FrameTable, anchor: str, max_cross: int) -> dict[str, list[tuple[str, int]]]:
    """Per extra camera: strided ``(episode, step)`` kept timesteps where it and the anchor both have a frame.

    ``max_cross`` frames in all are shared evenly between the extra cameras.
    """
    pools = {}
    others = [c for c in table.cameras if c != anchor]
    per_camera = max(2, max_cross // max(1, len(others)))
    for cam in others:
        both = [
            (ep, int(s))
            for ep in sorted(table.kept)
            for s in table.kept[ep]
            if table.has(ep, int(s), anchor) and table.has(ep, int(s), cam)
        ]
        stride = max(1, -(-len(both) // per_camera))
        if both:
            pools[cam] = both[::stride]
    return pools


def _extractors(model, info: BundleInfo | None, compares, seeds, device, raw_side: int, readout: str) -> list:
    def wrap(name, net, inf):
        return ModelExtractor(name, net, size=inf.input_size, mean=inf.mean, std=inf.std,
                              interpolation=inf.interpolation, device=device, readout=readout)

    ex = []
    if info is not None:
        ex.append(wrap("bundle", model, info))
        ex += [wrap(f"random_init@{s}", random_init(info, s), info) for s in seeds]
    ex += [wrap(name, net, inf) for name, (net, inf) in compares.items()]
    ex.append(RawPixels("raw_pixels", raw_side))
    return ex


def _load_compares(paths: Sequence[str | Path]) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for i, p in enumerate(paths):
        net, inf = load_bundle(p)
        name = f"compare:{inf.name}"
        out[name if name not in out else f"{name}#{i + 1}"] = (net, inf)
    return out


def column_for(name: str, seed: int) -> str:
    """Feature set behind a column for ``seed`` (random init is rebuilt per seed)."""
    return f"random_init@{seed}" if name == "random_init" else name


def run_probe(
    bundle: str | Path | None,
    data: Any = None,
    *,
    compare: Sequence[str | Path] = (),
    seeds: Sequence[int] = (0, 1),
    max_frames: int = MAX_FRAMES,
    device: str | None = "auto",
    write_into_bundle: bool = False,
    out: str | Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Probe ``bundle`` on ``data`` (default: the built-in synthetic probe split); return all numbers.

    ``bundle=None`` runs the data baselines only (raw pixels, ego status).
    ``options`` are :class:`ProbeOptions` fields (``camera``, ``inputs``,
    ``readout``, ``horizons``, ``dts``, ...). With ``out`` the run writes ``probe.json`` and
    ``probe.png`` there; with ``write_into_bundle`` it also writes ``probe.json``
    into the bundle folder (not listed in the bundle's manifest, so bundle
    verification ignores it; it records the weights' sha256 it probed).
    """
    t0 = time.perf_counter()
    opts = ProbeOptions(seeds=tuple(int(s) for s in seeds), max_frames=int(max_frames), **options)
    opts.check()
    if bundle is None and write_into_bundle:
        raise UsageError("write_into_bundle needs a bundle")
    dev = resolve_device(device)
    model, info = load_bundle(bundle) if bundle is not None else (None, None)
    compares = _load_compares(compare)
    shards = resolve_data(data)
    from ssltk.data.shards.reader import iter_segments

    table = load_frames(iter_segments(shards))
    anchor = pick_camera(table, opts.camera)
    choose_kept(table, opts.max_frames, anchor, opts.run_length)
    t_read = time.perf_counter()

    anchor_keys = table.kept_keys(anchor)
    pools = cross_pools(table, anchor, opts.max_cross)
    keys: list[FrameKey] = list(anchor_keys) + [(e, s, cam) for cam, pool in pools.items() for e, s in pool]
    extractors = _extractors(model, info, compares, opts.seeds, dev, opts.raw_side, opts.readout)
    feats = extract(table, keys, extractors, opts.batch_size)
    t_feat = time.perf_counter()

    rows = Rows(np.array([k[0] for k in anchor_keys]), np.array([k[1] for k in anchor_keys], dtype=np.int64))
    targets = build_targets(table, list(zip(rows.episodes.tolist(), rows.steps.tolist())), opts.horizons)
    ego = ego_status_inputs(table, rows)
    columns = (["bundle", "random_init"] if info is not None else []) + ["raw_pixels"]
    columns += (["ego_status"] if ego is not None and targets.waypoint_cols else []) + list(compares)
    per_seed, splits = _evaluate_all(table, anchor, rows, keys, pools, feats, ego, targets, columns, opts)
    t_eval = time.perf_counter()

    readouts = sorted({e.readout for e in extractors if isinstance(e, ModelExtractor)})
    result = assemble(
        per_seed,
        columns=columns,
        baselines=[c for c in BASELINES if c in columns],
        skipped=_skipped(table, targets, pools, opts, ego),
        meta={
            "bundle": {**info.as_dict(), "weights_sha256": _weights_sha(info.path)} if info is not None else None,
            "compare": {name: inf.as_dict() for name, (_, inf) in compares.items()},
            "data": _data_summary(shards, table, anchor, anchor_keys, pools),
            "readout": readouts[0] if len(readouts) == 1 else (readouts or None),
            "options": {**asdict(opts), "device": str(dev)},
            "splits": splits,
            "timing_s": {
                "read": round(t_read - t0, 3),
                "features": round(t_feat - t_read, 3),
                "probes": round(t_eval - t_feat, 3),
                "frames_encoded_per_model": len(keys),
            },
        },
    )
    result["timing_s"]["total"] = round(time.perf_counter() - t0, 3)
    _write_outputs(result, out, info.path if write_into_bundle and info is not None else None)
    return result


def _evaluate_all(table, anchor, rows, keys, pools, feats, ego, targets, columns, opts):
    """``per_seed[seed] = (metrics per column, notes)`` and the splits used.

    Regression fits on probe-train and scores probe-test; temporal retrieval
    draws queries and gallery from probe-test; cross-camera retrieval uses
    every pooled timestep (its pool is too small to split).
    """
    n_anchor = len(rows)
    offset, pool_slices = n_anchor, {}
    for cam, pool in pools.items():
        pool_slices[cam] = (pool, slice(offset, offset + len(pool)))
        offset += len(pool)
    anchor_index = {(k[0], k[1]): i for i, k in enumerate(keys[:n_anchor])}
    per_seed, splits = {}, []
    for seed in opts.seeds:
        train, test = split_episodes(table.kept, seed, opts.test_fraction)
        splits.append({"seed": seed, "train": train, "test": test})
        test_set = set(test)
        in_test = np.isin(rows.episodes, test)
        test_rows = Rows(rows.episodes[in_test], rows.steps[in_test])
        metrics, notes = {}, {}
        for col in columns:
            if col == "ego_status":
                F = np.zeros((len(rows), 1))
                outcomes = [regression_probe(rows, F, targets, test_set, v, fit_every=opts.fit_every, ego=ego) for v in opts.inputs]
            else:
                F = feats[column_for(col, seed)]
                fa = F[:n_anchor]
                outcomes = [regression_probe(rows, fa, targets, test_set, v, fit_every=opts.fit_every) for v in opts.inputs]
                outcomes.append(temporal_probe(test_rows, fa[in_test], opts.dts, opts.max_queries, seed))
                cross = {cam: (fa[[anchor_index[p] for p in pool]], F[sl]) for cam, (pool, sl) in pool_slices.items()}
                outcomes.append(cross_camera_probe(cross, anchor))
            metrics[col] = {k: v for o in outcomes for k, v in o.metrics.items()}
            for o in outcomes:  # notes describe the data and the split, not the model
                for k, v in o.notes.items():
                    notes.setdefault(k, v)
        per_seed[seed] = (metrics, notes)
    return per_seed, splits


def _skipped(table: FrameTable, targets, pools, opts: ProbeOptions, ego) -> list[dict[str, str]]:
    skipped = [{"probe": k, "reason": v} for k, v in targets.skipped.items()]
    if ego is None and targets.waypoint_cols:
        skipped.append({"probe": "ego-status baseline", "reason": "skipped: the data has no ego speed or yaw_rate"})
    if len(table.cameras) < 2:
        skipped.append({"probe": "cross-camera", "reason": "skipped: the data has one camera only"})
    elif not pools:
        skipped.append({"probe": "cross-camera", "reason": "skipped: no timestep has frames from two cameras"})
    return skipped


def _data_summary(shards, table: FrameTable, anchor: str, anchor_keys, pools) -> dict[str, Any]:
    return {
        "shards": list(shards),
        "episodes": len(table.episodes),
        "episodes_used": len(table.kept),
        "timesteps": int(sum(len(ep.steps) for ep in table.episodes.values())),
        "cameras": table.cameras,
        "anchor_camera": anchor,
        "ego_fields": table.ego_fields,
        "anchor_frames": len(anchor_keys),
        "cross_camera_frames": {cam: len(p) for cam, p in pools.items()},
    }


def _weights_sha(path: Path) -> str | None:
    try:
        manifest = json.loads((path / "ssltk.json").read_text())
        return manifest["files"]["model.safetensors"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_outputs(result: dict[str, Any], out: str | Path | None, bundle_dir: Path | None) -> None:
    from ssltk.probe.report import write_chart, write_json

    try:
        if out is not None:
            out = Path(out)
            out.mkdir(parents=True, exist_ok=True)
            write_json(result, out / "probe.json")
            write_chart(result, out / "probe.png")
            result["written"] = {"json": str(out / "probe.json"), "chart": str(out / "probe.png")}
        if bundle_dir is not None:
            write_json(result, bundle_dir / "probe.json")
            result.setdefault("written", {})["bundle"] = str(bundle_dir / "probe.json")
    except OSError as exc:
        raise UsageError(f"cannot write the probe results: {exc}") from None
