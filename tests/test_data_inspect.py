"""``ssltk data inspect``: numbers against a naive count, contact sheets, bad shards, and the docs' examples."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
from PIL import Image
from typer.testing import CliRunner

from ssltk.cli import build_app
from ssltk.data.synth import cache
from ssltk.data.shards import iter_segments, resolve_shards
from ssltk.data.shards.inspect import inspect_shards
from ssltk.data.synth.sheet import BACKGROUND, MISSING, contact_sheet
from ssltk.data.synth.episodes import synth_episodes
from ssltk.plugins import get_plugin_manager
from ssltk.testing.shards import identity_colours, write_tiny_shards

ROOT = Path(__file__).resolve().parents[1]


def cli(*args):
    return CliRunner().invoke(build_app(get_plugin_manager()), list(map(str, args)))


def naive_summary(folder) -> dict:
    """Count by reading every segment with images (the reference for inspect_shards)."""
    steps, missing, images, segments = set(), {}, 0, 0
    for _, meta, imgs in iter_segments(resolve_shards(folder)):
        segments += 1
        images += len(imgs)
        for i in range(meta.length):
            key = (meta.episode, meta.start + i)
            if key in steps:
                continue
            steps.add(key)
            for cam in meta.cameras:
                missing[cam] = missing.get(cam, 0) + ((i, cam) not in imgs)
    return {"segments": segments, "images": images, "timesteps": len(steps), "missing": missing,
            "episodes": len({e for e, _ in steps})}  # fmt: skip


def test_numbers_match_a_naive_count(tmp_path):
    synth_episodes(tmp_path / "s", episodes=3, length=20, image_size=32, cameras=["front", "rear"], drop_rate=0.2,
                   segment_length=8, overlap=4, shard_size=4)  # fmt: skip
    info = inspect_shards(tmp_path / "s")
    ref = naive_summary(tmp_path / "s")
    assert {k: info[k] for k in ref} == ref
    assert info["frames"] == 3 * 20 * 2 - sum(ref["missing"].values())
    assert info["shards"] == len(list((tmp_path / "s").glob("*.tar"))) > 1
    assert info["bytes"] == sum(p.stat().st_size for p in (tmp_path / "s").glob("*.tar"))
    assert info["cameras"] == ["front", "rear"] and info["fps"] == [10.0] and info["image_size"] == [[32, 32]]
    assert info["segment_length"] == 8 and info["episode_timesteps"] == {"min": 20, "mean": 20.0, "max": 20}
    assert info["duration_s"] == pytest.approx(3 * 1.9)
    assert info["ego_fields"]["speed"] == 1.0 and info["generator"] == "ssltk.data.synth"
    assert info["missing_rate"]["rear"] == pytest.approx(ref["missing"]["rear"] / 60, abs=1e-6)


def test_closed_form_counts_and_unknown_ego_values(tmp_path):
    write_tiny_shards(tmp_path / "t", episodes=2, length=12, cameras=("front", "rear"), drop={"rear": [0, 5]},
                      segment_length=8, overlap=0)  # fmt: skip
    info = inspect_shards(tmp_path / "t")
    assert info["timesteps"] == 24 and info["segments"] == 4 and info["episodes"] == 2
    assert info["missing"] == {"front": 0, "rear": 4} and info["images"] == 24 * 2 - 4 == info["frames"]
    assert info["ego_fields"] == {"speed": 1.0, "steering": 0.0}  # steering is unknown everywhere
    assert info["segment_length"] == {"4": 2, "8": 2}


def test_cli_json_and_table(tmp_path):
    write_tiny_shards(tmp_path / "t", episodes=1, length=6, cameras=("front",))
    result = cli("data", "inspect", tmp_path / "t", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(json.dumps(inspect_shards(tmp_path / "t")))
    table = cli("data", "inspect", tmp_path / "t")
    assert table.exit_code == 0 and "missing frames" in table.stdout and "episodes" in table.stdout


def test_contact_sheet_puts_each_image_in_its_cell(tmp_path):
    write_tiny_shards(tmp_path / "t", episodes=2, length=12, cameras=("front", "rear"), image_size=16,
                      drop={"rear": [0]}, segment_length=8, overlap=0)  # fmt: skip
    out = contact_sheet(tmp_path / "t", tmp_path / "sheet.png", episodes=2, columns=4, cell=40)
    sheet = np.asarray(Image.open(out).convert("RGB")).astype(int)
    label_w, head_h, gap, iw = 90, 18, 4, 40
    assert sheet.shape == (2 * (head_h + 2 * (iw + gap) + 2 * gap), label_w + 4 * (iw + gap), 3)
    steps = [0, 4, 7, 11]
    for e in range(2):
        for r, cam in enumerate(("front", "rear")):
            for c, t in enumerate(steps):
                top = gap + e * (head_h + 2 * (iw + gap) + 2 * gap) + head_h + r * (iw + gap)
                left = label_w + c * (iw + gap)
                pixel = sheet[top + 8, left + iw // 2]  # upper half of the cell, off the diagonals
                if cam == "rear" and t == 0:
                    assert tuple(pixel) == MISSING
                else:
                    expected = identity_colours(e, t, r)[0]
                    assert np.abs(pixel - expected).max() <= 8, (e, cam, t)
    assert tuple(sheet[0, 0]) == BACKGROUND


def test_contact_sheet_with_consecutive_frames_and_unknown_camera(tmp_path):
    write_tiny_shards(tmp_path / "t", episodes=1, length=10, cameras=("front",), image_size=16)
    out = contact_sheet(tmp_path / "t", tmp_path / "s.png", stride=1, columns=5, start=3, cell=20)
    assert Image.open(out).size == (90 + 5 * 24, 18 + 24 + 8)
    result = cli("data", "inspect", tmp_path / "t", "--sheet", tmp_path / "x.png", "--sheet-cameras", "frnt")
    assert result.exit_code == 2 and "did you mean 'front'" in result.output


def test_bad_shards_are_one_line(tmp_path):
    missing = cli("data", "inspect", tmp_path / "nothing")
    assert missing.exit_code == 2 and "does not exist" in missing.output and "Traceback" not in missing.output
    write_tiny_shards(tmp_path / "t", episodes=1, length=6)
    shard = sorted((tmp_path / "t").glob("*.tar"))[0]
    shard.write_bytes(shard.read_bytes()[:700])
    broken = cli("data", "inspect", tmp_path / "t")
    assert broken.exit_code == 1 and shard.name in broken.output and "Traceback" not in broken.output


# ---------------------------------------------------------------- the docs' examples


def _raw_example(root: Path) -> None:
    """The raw layout shown in docs/data.md: two drives, front and rear cameras."""
    for e, name in enumerate(("drive_0001", "drive_0002")):
        folder = root / name
        folder.mkdir(parents=True)
        lines = []
        for f in range(12):
            lines.append(json.dumps({"frame": f, "timestamp": f / 10, "speed": 12.3 + f, "yaw_rate": None if f == 1 else 0.01,
                                     "gps_quality": 4}))  # fmt: skip
            for c, cam in enumerate(("front", "rear")):
                img = np.full((48, 64, 3), (40 * e + 3 * f, 60 * c, 90), np.uint8)
                (folder / f"{f:06d}.{cam}.jpg").write_bytes(simplejpeg.encode_jpeg(img))
        (folder / "meta.jsonl").write_text("\n".join(lines) + "\n")


def _blocks(doc: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)\n```", (ROOT / "docs" / doc).read_text(), re.S)


@pytest.mark.slow
def test_docs_data_examples_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SSLTK_CACHE", str(tmp_path / "cache"))
    tiny = {"episodes": 1, "length": 8, "image_size": 32}
    monkeypatch.setattr(cache, "DEFAULT_SPLITS", {k: {**v, **tiny} for k, v in cache.DEFAULT_SPLITS.items()})
    _raw_example(tmp_path / "raw")
    commands = [line for block in _blocks("data.md", "bash") for line in block.splitlines() if line.startswith("ssltk ")]
    assert len(commands) >= 8
    for command in commands:
        result = cli(*shlex.split(command)[1:])
        assert result.exit_code == 0, f"{command}\n{result.output}"
    (python,) = _blocks("data.md", "python")
    exec(compile(python, "docs/data.md", "exec"), {})
    for sheet in ("sheets/synth.png", "sheets/consecutive.png", "sheets/api.png"):
        assert Image.open(sheet).size[0] > 100
    raw = inspect_shards("shards/raw")
    assert raw["episodes"] == 2 and raw["ego_fields"]["yaw_rate"] == pytest.approx(22 / 24)
    assert inspect_shards("shards/synth_wide")["image_size"] == [[64, 96]]


def test_docs_episode_shards_reading_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_tiny_shards(tmp_path / "shards", episodes=1, length=4, cameras=("front", "rear"))
    (reading,) = [b for b in _blocks("episode_shards.md", "python") if "iter_segments" in b]
    exec(compile(reading, "docs/episode_shards.md", "exec"), {})
    assert capsys.readouterr().out.startswith("ep0000 0 ")


def test_docs_show_the_contact_sheet():
    sheet = ROOT / "docs" / "images" / "synth_contact_sheet.png"
    assert "images/synth_contact_sheet.png" in (ROOT / "docs" / "episode_shards.md").read_text()
    assert Image.open(sheet).size[0] > 600
