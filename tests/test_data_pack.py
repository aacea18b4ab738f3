"""``ssltk data pack``: raw episode folders -> shards, round trips, and every kind of bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
from PIL import Image
from typer.testing import CliRunner

from ssltk.cli import build_app
from ssltk.data.shards import format as fmt
from ssltk.data.shards import iter_segments, resolve_shards
from ssltk.data.shards.pack import pack_episodes
from ssltk.errors import UsageError
from ssltk.plugins import get_plugin_manager


def picture(frame: int, cam: int, size=(24, 32)) -> np.ndarray:
    """A smooth image that differs per frame and camera (JPEG-friendly)."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 7 + frame * 11) % 256, (yy * 9 + cam * 60) % 256, ((xx + yy) * 4 + frame * 5) % 256], -1)
    return img.astype(np.uint8)


def encode(img: np.ndarray, ext: str) -> bytes:
    if ext == "png":
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "PNG")
        return buf.getvalue()
    return simplejpeg.encode_jpeg(img, quality=95, colorsubsampling="444")


def make_raw(root: Path, *, episodes=2, frames=10, cameras=("front", "rear"), ext="jpg", skip=(), size=(24, 32)) -> Path:
    """Raw episodes ``ep0, ep1, ...``; ``skip`` holds (episode, frame, camera) without an image."""
    for e in range(episodes):
        folder = root / f"ep{e}"
        folder.mkdir(parents=True)
        lines = []
        for f in range(frames):
            frame = 100 + f  # frame numbers need not start at 0
            lines.append(json.dumps({"frame": frame, "timestamp": 5.0 + f * 0.05, "speed": 10.0 + f,
                                     "my_sensor": -f if f % 3 else None, "note": "text is ignored"}))  # fmt: skip
            for c, cam in enumerate(cameras):
                if (e, f, cam) not in skip:
                    (folder / f"{frame:06d}.{cam}.{ext}").write_bytes(encode(picture(f + 50 * e, c, size), ext))
        (folder / "meta.jsonl").write_text("\n".join(lines) + "\n")
    return root


def read_back(out: Path) -> dict:
    """(episode, frame, camera) -> image bytes, plus per-timestep metadata, from packed shards."""
    images, meta_by_step = {}, {}
    for _, meta, imgs in iter_segments(resolve_shards(out)):
        for i, frame in enumerate(meta.frames):
            step = {"timestamp": meta.timestamps[i], "ego": {k: v[i] for k, v in meta.ego.items()},
                    "missing": sorted(c for c in meta.cameras if not meta.has_frame(i, c))}  # fmt: skip
            assert meta_by_step.setdefault((meta.episode, frame), step) == step  # overlapping segments agree
            for cam in meta.cameras:
                if (i, cam) in imgs:
                    images[(meta.episode, frame, cam)] = imgs[(i, cam)]
    return {"images": images, "steps": meta_by_step}


# ---------------------------------------------------------------- round trips


def test_jpeg_round_trip_is_byte_identical(tmp_path):
    raw = make_raw(tmp_path / "raw", skip={(1, 3, "rear"), (1, 4, "front")})
    summary = pack_episodes(raw, tmp_path / "out", segment_length=4, overlap=2, shard_size=3)
    back = read_back(tmp_path / "out")
    files = {(p.parent.name, int(p.name[:6]), p.name.split(".")[1]): p.read_bytes() for p in raw.rglob("*.jpg")}
    assert back["images"] == files
    assert summary["passed_through"] == len(files) and summary["reencoded"] == 0
    assert summary["missing"] == {"front": 1, "rear": 1} and summary["timesteps"] == 20
    assert summary["shards"] > 1 and summary["ignored_fields"] == ["note"]
    step = back["steps"][("ep1", 103)]
    assert step["missing"] == ["rear"] and step["timestamp"] == pytest.approx(5.15)
    assert back["steps"][("ep1", 105)]["ego"] == {"speed": 15.0, "my_sensor": -5.0}  # other numeric names are kept
    assert back["steps"][("ep0", 100)]["ego"]["my_sensor"] is None


def test_png_input_is_encoded_to_jpeg(tmp_path):
    raw = make_raw(tmp_path / "raw", episodes=1, frames=3, ext="png")
    summary = pack_episodes(raw, tmp_path / "out", quality=95)
    back = read_back(tmp_path / "out")["images"]
    assert summary["reencoded"] == 6
    got = simplejpeg.decode_jpeg(back[("ep0", 101, "rear")]).astype(int)
    assert np.abs(got - picture(1, 1)).mean() < 4


def test_resize_reencodes_to_the_requested_size(tmp_path):
    raw = make_raw(tmp_path / "raw", episodes=1, frames=3)
    pack_episodes(raw, tmp_path / "out", image_size=(12, 16), quality=95)
    segments = list(iter_segments(resolve_shards(tmp_path / "out")))
    assert segments[0][1].image_size == [12, 16]
    got = simplejpeg.decode_jpeg(segments[0][2][(2, "front")]).astype(int)
    ref = np.asarray(Image.fromarray(picture(2, 0)).resize((16, 12), Image.Resampling.BILINEAR)).astype(int)
    assert got.shape == (12, 16, 3) and np.abs(got - ref).mean() < 8


def test_folders_it_did_not_create(tmp_path):
    """Extra files are ignored, a camera seen in only some frames gives missing flags, names are sanitised."""
    raw = make_raw(tmp_path / "raw", episodes=1, frames=4)
    ep = raw / "ep0"
    (ep / "README.txt").write_text("notes")
    (ep / "thumbs").mkdir()
    (ep / "000101.FRONT_LEFT.JPG").write_bytes(encode(picture(9, 2), "jpg"))  # one frame only, upper-case name
    (ep / "999999.front.jpg").write_bytes(encode(picture(9, 0), "jpg"))  # no meta line
    ep.rename(raw / "drive.2024-05-01")
    summary = pack_episodes(raw, tmp_path / "out", segment_length=4, overlap=0)
    back = read_back(tmp_path / "out")
    assert summary["ignored_files"] == 3 and summary["renamed"] == {str(raw / "drive.2024-05-01"): "drive_2024-05-01"}
    assert back["steps"][("drive_2024-05-01", 100)]["missing"] == ["front_left"]
    assert back["steps"][("drive_2024-05-01", 101)]["missing"] == []
    assert summary["missing"] == {"front": 0, "front_left": 3, "rear": 0}


def test_a_single_episode_folder_can_be_packed(tmp_path):
    raw = make_raw(tmp_path / "raw", episodes=1, frames=3)
    summary = pack_episodes(raw / "ep0", tmp_path / "out")
    assert summary["episodes"] == 1 and {k[0] for k in read_back(tmp_path / "out")["images"]} == {"ep0"}


def test_interrupted_pack_leaves_no_complete_looking_shard(tmp_path, monkeypatch):
    raw = make_raw(tmp_path / "raw", episodes=2, frames=10)
    calls = {"n": 0}
    real_write = fmt.ShardSetWriter.write

    def write(self, meta, images):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_write(self, meta, images)

    monkeypatch.setattr(fmt.ShardSetWriter, "write", write)
    with pytest.raises(KeyboardInterrupt):
        pack_episodes(raw, tmp_path / "out", segment_length=4, overlap=0, shard_size=1)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


# ---------------------------------------------------------------- bad input through the CLI


def run(*args):
    return CliRunner().invoke(build_app(get_plugin_manager()), ["data", "pack", *map(str, args)])


def assert_one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    text = " ".join(line.strip() for line in lines)
    assert "Traceback" not in result.output and text.startswith("error:"), result.output
    for needle in needles:
        assert needle in text.replace("\n", ""), (needle, result.output)


def _break_meta(raw: Path) -> Path:
    meta = raw / "ep1" / "meta.jsonl"
    lines = meta.read_text().splitlines()
    lines[2] = lines[2][:-5]  # cut the JSON short
    meta.write_text("\n".join(lines) + "\n")
    return meta


def _unreadable(raw: Path) -> Path:
    bad = raw / "ep0" / "000104.front.jpg"
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])  # truncated JPEG
    (raw / "ep1" / "000102.rear.jpg").write_bytes(b"not an image at all")
    return bad


def _other_size(raw: Path) -> Path:
    odd = raw / "ep1" / "000105.front.jpg"
    odd.write_bytes(encode(picture(5, 0, size=(20, 32)), "jpg"))
    return odd


def _no_image(raw: Path) -> Path:
    for cam in ("front", "rear"):
        (raw / "ep0" / f"000106.{cam}.jpg").unlink()
    return raw / "ep0" / "meta.jsonl"


@pytest.mark.parametrize(
    "damage,kind,needles",
    [
        (_break_meta, "bad meta lines", ["meta.jsonl:3", "not valid JSON"]),
        (_unreadable, "unreadable images", ["000104.front.jpg", "unreadable image"]),
        (_other_size, "images of another size", ["000105.front.jpg", "32x20", "--image-size"]),
        (_no_image, "frames without images", ["meta.jsonl", "frame 106", "no image"]),
    ],
)
def test_bad_input_fails_with_one_line_or_is_counted_when_lenient(tmp_path, damage, kind, needles):
    raw = make_raw(tmp_path / "raw")
    bad = damage(raw)
    result = run(raw, "--out", tmp_path / "out")
    assert_one_line_error(result, str(bad.parent.name), *needles)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    lenient = run(raw, "--out", tmp_path / "out", "--lenient", "--json")
    assert lenient.exit_code == 0, lenient.output
    summary = json.loads(lenient.stdout)
    assert summary["skipped"][kind] >= 1 and summary["episodes"] == 2
    assert any(needles[0] in m for m in summary["messages"])


def test_lenient_frames_without_images_keep_the_time_axis(tmp_path):
    raw = make_raw(tmp_path / "raw", episodes=1)
    _no_image(raw)
    summary = pack_episodes(raw, tmp_path / "out", lenient=True)
    assert summary["timesteps"] == 10 and summary["missing"] == {"front": 1, "rear": 1}


@pytest.mark.parametrize(
    "setup,needles",
    [
        (lambda p: p / "nowhere", ["nowhere", "does not exist"]),
        (lambda p: (p / "empty").mkdir() or p / "empty", ["empty", "is empty"]),
        (lambda p: _junk(p / "junk"), ["junk", "no episode in raw format", "meta.jsonl"]),
        (lambda p: _junk(p / "junk") / "a.txt", ["a.txt", "is not a folder"]),
    ],
)
def test_unusable_source_is_one_line_even_when_lenient(tmp_path, setup, needles):
    src = setup(tmp_path)
    assert_one_line_error(run(src, "--out", tmp_path / "out"), *needles)
    assert_one_line_error(run(src, "--out", tmp_path / "out", "--lenient"), *needles)


def _junk(folder: Path) -> Path:
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("x")
    (folder / "sub" / "000000.front.jpg").write_bytes(b"x")
    return folder


def test_output_with_shards_needs_overwrite(tmp_path):
    raw = make_raw(tmp_path / "raw", episodes=1, frames=3)
    assert run(raw, "--out", tmp_path / "out").exit_code == 0
    assert_one_line_error(run(raw, "--out", tmp_path / "out"), "out", "already has shards", "--overwrite")
    result = run(raw, "--out", tmp_path / "out", "--overwrite")
    assert result.exit_code == 0 and "packed into" in result.stdout and "episodes" in result.stdout


def test_timestamps_must_increase(tmp_path):
    raw = make_raw(tmp_path / "raw", episodes=1, frames=4)
    meta = raw / "ep0" / "meta.jsonl"
    rows = [json.loads(line) for line in meta.read_text().splitlines()]
    rows[2]["timestamp"] = rows[0]["timestamp"]
    meta.write_text("\n".join(map(json.dumps, rows)) + "\n")
    with pytest.raises(UsageError, match="frame 102 has timestamp"):
        pack_episodes(raw, tmp_path / "out")


def test_bad_options(tmp_path):
    raw = make_raw(tmp_path / "raw", episodes=1, frames=3)
    for kwargs in ({"overlap": 16}, {"quality": 0}, {"image_size": 4}):
        with pytest.raises(UsageError):
            pack_episodes(raw, tmp_path / "out", **kwargs)
    assert_one_line_error(run(raw, "--out", tmp_path / "o", "--image-size", "big"), "image size", "WIDTHxHEIGHT")
