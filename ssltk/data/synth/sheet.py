"""Contact sheets of episode shards: cameras as rows, time as columns (``ssltk data inspect --sheet``)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ssltk.data.shards.format import resolve_shards
from ssltk.data.shards.inspect import iter_metas
from ssltk.data.shards.reader import group_samples, read_shard, segment_images
from ssltk.errors import UnknownNameError, UsageError

__all__ = ["contact_sheet"]

BACKGROUND, INK, MISSING = (24, 24, 28), (230, 230, 230), (70, 70, 76)


def _pick(paths: list[str], episodes: int, columns: int, stride: int | None, start: int):
    """Episodes to show (first ``episodes`` in shard order), their cameras/fps and the timesteps of each column."""
    chosen: dict[str, dict] = {}
    for _, meta, _ in iter_metas(paths, []):  # damaged shards are reported by inspect_shards
        if meta.episode not in chosen and len(chosen) >= episodes:
            continue
        ep = chosen.setdefault(meta.episode, {"cameras": list(meta.cameras), "length": 0, "times": {}})
        for cam in meta.cameras:
            if cam not in ep["cameras"]:
                ep["cameras"].append(cam)
        for i, ts in enumerate(meta.timestamps):
            ep["times"][meta.start + i] = ts
        ep["length"] = max(ep["length"], meta.episode_length or 0, meta.start + meta.length)
    for ep in chosen.values():
        n = ep["length"]
        if stride:
            steps = [start + k * stride for k in range(columns)]
        else:
            steps = sorted(set(np.linspace(start, n - 1, min(columns, max(n - start, 1))).round().astype(int).tolist()))
        ep["steps"] = [t for t in steps if 0 <= t < n]
    return chosen


def _collect(paths: list[str], chosen: dict) -> dict[tuple[str, int, str], bytes]:
    """Encoded images for the chosen (episode, timestep, camera) cells."""
    wanted = {(name, t) for name, ep in chosen.items() for t in ep["steps"]}
    found: dict[tuple[str, int, str], bytes] = {}
    for url in paths:
        problems: list = []  # damage is reported by inspect_shards
        for sample in group_samples(read_shard(url, problems), url, problems):
            episode, _, seg = sample["__key__"].rpartition("/")
            if episode not in chosen or not seg.startswith("s"):
                continue
            for (i, cam), data in segment_images(sample).items():
                t = int(seg[1:]) + i
                if (episode, t) in wanted:
                    found.setdefault((episode, t, cam), data)
    return found


def _decode(data: bytes):
    from PIL import Image
    import io

    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def contact_sheet(
    spec: str | Path | Iterable[str],
    out: str | Path,
    *,
    episodes: int = 3,
    columns: int = 8,
    cameras: Sequence[str] | None = None,
    cell: int | None = None,
    stride: int | None = None,
    start: int = 0,
) -> Path:
    """Write a PNG contact sheet of the first ``episodes`` episodes; return its path.

    Rows are cameras (all, or ``cameras``), columns are ``columns`` timesteps
    spread over each episode, or every ``stride``-th timestep from ``start``
    (``stride=1`` shows consecutive frames). ``cell`` is the width of one
    image in pixels (default: the image width, at least 128). Missing frames
    are drawn as dark cells with a cross.
    """
    from PIL import Image, ImageDraw, ImageFont

    if episodes < 1 or columns < 1 or (stride is not None and stride < 1):
        raise UsageError("a contact sheet needs episodes >= 1, columns >= 1 and stride >= 1")
    paths = resolve_shards(spec)
    chosen = _pick(paths, episodes, columns, stride, start)
    if not chosen:
        raise UsageError(f"no segments in {spec}")
    all_cams = list(dict.fromkeys(c for ep in chosen.values() for c in ep["cameras"]))
    for cam in cameras or ():
        if cam not in all_cams:
            raise UnknownNameError("camera", cam, all_cams)
    show = list(cameras) if cameras else all_cams
    images = _collect(paths, chosen)
    sample = _decode(next(iter(images.values()))) if images else None
    iw = cell or max(sample.width if sample else 128, 128)
    ih = round(iw * (sample.height / sample.width)) if sample else iw
    font = ImageFont.load_default(size=max(11, iw // 10))
    label_w, head_h, gap = max(90, iw * 3 // 4), max(18, iw // 6), 4
    ncols = max(len(ep["steps"]) for ep in chosen.values())
    block_h = head_h + len(show) * (ih + gap)
    sheet = Image.new("RGB", (label_w + ncols * (iw + gap), len(chosen) * (block_h + 2 * gap)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    y = gap
    for name, ep in chosen.items():
        draw.text((4, y + 2), name, fill=INK, font=font)
        for c, t in enumerate(ep["steps"]):
            ts = ep["times"].get(t)
            draw.text((label_w + c * (iw + gap) + 2, y + 2), f"t={ts:.1f}s" if ts is not None else f"#{t}", fill=INK, font=font)
        for r, cam in enumerate(show):
            top = y + head_h + r * (ih + gap)
            draw.text((4, top + ih // 2 - 6), cam, fill=INK, font=font)
            for c, t in enumerate(ep["steps"]):
                left = label_w + c * (iw + gap)
                data = images.get((name, t, cam))
                if data is None:
                    draw.rectangle([left, top, left + iw - 1, top + ih - 1], fill=MISSING)
                    draw.line([left, top, left + iw - 1, top + ih - 1], fill=BACKGROUND, width=2)
                    draw.line([left, top + ih - 1, left + iw - 1, top], fill=BACKGROUND, width=2)
                    continue
                sheet.paste(_decode(data).resize((iw, ih), Image.Resampling.BICUBIC), (left, top))
        y += block_h + 2 * gap
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
