"""`ssltk data inspect` on damaged shards: every shard is read, each damaged shard and sample is named
with its kind, the summary counts what is readable, and the exit code is 1."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ssltk.cli import build_app
from ssltk.data.shards.inspect import inspect_shards
from ssltk.plugins import get_plugin_manager
from ssltk.testing.shards import write_raw_tar, write_tiny_shards


def cli(*args):
    return CliRunner().invoke(build_app(get_plugin_manager(load=["ssltk"])), [str(a) for a in args])


def _members(shard: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(shard) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


@pytest.fixture
def damaged(tmp_path) -> Path:
    """Five shards: good, one sample without JSON, truncated, empty (0 bytes), not a tar."""
    d = tmp_path / "d"
    write_tiny_shards(d, episodes=3, length=16, cameras=("front",), image_size=16, segment_length=8, segments_per_shard=2)
    shards = sorted(d.glob("*.tar"))
    assert len(shards) == 3
    members = _members(shards[1])
    dropped = [n for n, _ in members if n.endswith(".json")][0]
    write_raw_tar(shards[1], [(n, b) for n, b in members if n != dropped])
    data = shards[2].read_bytes()
    shards[2].write_bytes(data[: len(data) // 2])
    (d / "shard-000010.tar").write_bytes(b"")
    (d / "shard-000011.tar").write_bytes(b"this is not a tar file " * 40)
    return d


def test_every_damaged_shard_and_sample_is_named(damaged):
    info = inspect_shards(str(damaged / "*.tar"))
    kinds = {(Path(d["shard"]).name, d["kind"]) for d in info["damaged"]}
    assert kinds == {
        ("shard-000001.tar", "no_json"),
        ("shard-000002.tar", "truncated_tar"),
        ("shard-000010.tar", "empty_shard"),
        ("shard-000011.tar", "not_a_tar"),
    }
    no_json = next(d for d in info["damaged"] if d["kind"] == "no_json")
    assert no_json["key"] == "ep0001/s000000"  # the sample, not just the shard
    assert info["damaged_shards"] == 4 and info["shards"] == 5
    assert info["segments"] >= 3  # the good shard, the other sample, the samples before the cut


def test_cli_prints_the_readable_summary_then_the_damage_and_exits_1(damaged):
    r = cli("data", "inspect", damaged / "*.tar")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "segments" in r.stdout and "episodes" in r.stdout  # what is readable
    err = r.stderr
    assert "damaged: 4 of 5 shard(s)" in err
    for name, kind in [("shard-000001.tar, sample ep0001/s000000", "no_json"), ("shard-000002.tar", "truncated_tar"),
                       ("shard-000010.tar", "empty_shard"), ("shard-000011.tar", "not_a_tar")]:
        assert any(name in ln and f"[{kind}]" in ln for ln in err.splitlines()), (name, err)


def test_json_lists_the_damage_and_exits_1(damaged):
    r = cli("data", "inspect", damaged / "*.tar", "--json")
    assert r.exit_code == 1
    info = json.loads(r.stdout)
    assert sorted(info["damage_kinds"]) == ["empty_shard", "no_json", "not_a_tar", "truncated_tar"]
    assert all({"shard", "kind", "key", "detail"} <= set(d) for d in info["damaged"])


def test_only_fault_a_sample_without_json_is_not_rc_0(tmp_path):
    d = tmp_path / "one"
    write_tiny_shards(d, episodes=1, length=16, cameras=("front",), segment_length=8)
    shard = sorted(d.glob("*.tar"))[0]
    members = _members(shard)
    write_raw_tar(shard, [(n, b) for n, b in members if n != "ep0000/s000008.json"])
    r = cli("data", "inspect", d)
    assert r.exit_code == 1 and "ep0000/s000008" in r.stderr and "[no_json]" in r.stderr


def test_nothing_readable_names_each_shard(tmp_path):
    (tmp_path / "a.tar").write_bytes(b"")
    (tmp_path / "b.tar").write_bytes(b"x" * 1024)
    r = cli("data", "inspect", tmp_path / "*.tar")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "a.tar" in r.stderr and "b.tar" in r.stderr and "nothing in them is readable" in r.stderr


def test_duplicate_member_and_bad_json_are_named(tmp_path):
    d = tmp_path / "dup"
    write_tiny_shards(d, episodes=1, length=8, cameras=("front",), segment_length=8)
    shard = sorted(d.glob("*.tar"))[0]
    members = _members(shard)
    jpg = next(m for m in members if m[0].endswith(".jpg"))
    write_raw_tar(shard, [jpg, *[(n, b"{not json" if n.endswith(".json") else b) for n, b in members]])
    kinds = sorted(x["kind"] for x in inspect_shards(d).get("damaged", []))
    assert kinds == ["bad_json", "bad_member"]


def test_clean_shards_report_no_damage(tmp_path):
    write_tiny_shards(tmp_path / "ok", episodes=2, length=8)
    info = inspect_shards(tmp_path / "ok")
    assert info["damaged"] == [] and info["damaged_shards"] == 0
    assert cli("data", "inspect", tmp_path / "ok").exit_code == 0
