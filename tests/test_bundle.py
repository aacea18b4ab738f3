"""Bundles: timm-native round trip, manifest, verify, atomic updates, data checksums."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from torch import nn

from ssltk import bundle as bundle_mod
from ssltk.bundle import (
    BUNDLE_FORMAT_VERSION,
    check_out_dir,
    describe_data,
    inspect_bundle,
    is_bundle,
    load_backbone,
    plugin_versions,
    read_manifest,
    verify_bundle,
    write_bundle,
)
from ssltk.checkpoint import save_train_state
from ssltk.data.shards.format import SegmentMeta, ShardSetWriter
from ssltk.errors import UsageError
from ssltk.registry import Registry

ROOT = Path(__file__).resolve().parents[1]


def make_backbone(name: str = "resnet18", img_size: int = 32, **kw):
    torch.manual_seed(0)
    entry, model = Registry().backbone(name)
    return entry.obj.create(model, img_size=img_size, **kw)


class Proj(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(dim, 16), nn.ReLU(), nn.Linear(16, 8))


def run_manifest(**over) -> dict:
    manifest = {
        "objectives": [{"name": "temporal-infonce", "weight": 1.0, "options": {"temperature": 0.1}}],
        "views": {"slots": ["t", "t+1..4f"], "deltas": [None, "1..4f"], "cameras": ["front"]},
        "data": {"spec": "shards/", "shards": ["shards/shard-000000.tar"], "checksum": "sha256:" + "0" * 64},
        "seed": 0,
        "steps": 10,
        "world_size": 1,
        "global_batch": 8,
        "final_metrics": {"loss": 1.25},
        "config": {"lr": 0.001},
        "plugins": {"timm": {"dist": "ssltk", "version": "0"}},
    }
    manifest.update(over)
    return manifest


def make_bundle(out: Path, backbone=None, **kw) -> Path:
    backbone = backbone or make_backbone()
    heads = {"temporal-infonce": Proj(backbone.num_features)}
    return write_bundle(out, backbone=backbone, heads=heads, manifest=run_manifest(), **kw)


@pytest.mark.parametrize(
    "name,img_size",
    [("resnet18", 32), ("vit_tiny_patch16_224", 64), ("convnext_atto", 32)],
)
def test_plain_timm_round_trip_is_exact(tmp_path, name, img_size):
    backbone = make_backbone(name, img_size=img_size).eval()
    out = make_bundle(tmp_path / "run", backbone)
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    x = torch.randn(2, 3, img_size, img_size)
    with torch.no_grad():
        assert torch.equal(backbone(x), model(x))
    result = model.load_state_dict(load_file(str(out / "model.safetensors")), strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert list(timm.data.resolve_model_data_config(model)["input_size"]) == [3, img_size, img_size]
    assert verify_bundle(out) == []


def test_load_backbone_returns_eval_model_and_preprocess(tmp_path):
    backbone = make_backbone().eval()
    out = make_bundle(tmp_path / "run", backbone)
    model, pre = load_backbone(out)
    assert not model.training
    assert pre == {
        "mean": pytest.approx([0.485, 0.456, 0.406]),
        "std": pytest.approx([0.229, 0.224, 0.225]),
        "input_size": [3, 32, 32],
        "interpolation": backbone.data_config["interpolation"],
    }
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), backbone(x))


def test_manifest_contents(tmp_path):
    out = make_bundle(tmp_path / "run", extra_files={"notes/readme.txt": b"hello", "log.txt": _text(tmp_path)})
    m = read_manifest(out)
    assert m["format"] == "ssltk-bundle" and m["format_version"] == BUNDLE_FORMAT_VERSION
    assert set(m["versions"]) >= {"ssltk", "torch", "timm"}
    assert m["backbone"] == {
        "family": "timm",
        "name": "resnet18",
        "kwargs": {},
        "num_features": 512,
        "parameters": sum(p.numel() for p in make_backbone().parameters()),
    }
    assert m["input"]["input_size"] == [3, 32, 32]
    assert m["heads"] == {"temporal-infonce": {"tensors": 4, "parameters": 512 * 16 + 16 + 16 * 8 + 8}}
    assert m["steps"] == 10 and m["final_metrics"] == {"loss": 1.25} and m["objectives"][0]["weight"] == 1.0
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert sorted(m["files"]) == [f for f in on_disk if f != "ssltk.json"]
    import hashlib

    for name, entry in m["files"].items():
        assert entry["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert (out / "notes/readme.txt").read_bytes() == b"hello"
    # Custom metadata sits at the top level of config.json (timm rejects unknown pretrained_cfg keys).
    config = json.loads((out / "config.json").read_text())
    assert config["ssltk"]["manifest"] == "ssltk.json" and config["num_classes"] == 0


def _text(tmp_path: Path) -> Path:
    p = tmp_path / "log-src.txt"
    p.write_text("step 1 loss 2.0\n")
    return p


def test_heads_are_prefixed_by_objective(tmp_path):
    out = make_bundle(tmp_path / "run")
    keys = sorted(load_file(str(out / "heads.safetensors")))
    assert keys == [
        "temporal-infonce.proj.0.bias",
        "temporal-infonce.proj.0.weight",
        "temporal-infonce.proj.2.bias",
        "temporal-infonce.proj.2.weight",
    ]


def test_verify_catches_flipped_byte(tmp_path):
    out = make_bundle(tmp_path / "run")
    data = bytearray((out / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x01
    (out / "model.safetensors").write_bytes(bytes(data))
    problems = verify_bundle(out)
    assert any("model.safetensors: sha256 does not match" in p for p in problems)


def test_verify_catches_missing_file(tmp_path):
    out = make_bundle(tmp_path / "run")
    (out / "heads.safetensors").unlink()
    assert verify_bundle(out) == ["missing file heads.safetensors"]


def test_verify_catches_weights_that_do_not_fit(tmp_path):
    """Hashes can all be right and the weights still not fit the declared architecture."""
    out = make_bundle(tmp_path / "run")
    config = json.loads((out / "config.json").read_text())
    config["architecture"] = "resnet34"
    (out / "config.json").write_text(json.dumps(config))
    m = read_manifest(out)
    m["backbone"]["name"] = "resnet34"
    m["files"]["config.json"]["sha256"] = bundle_mod.sha256_file(out / "config.json")
    (out / "ssltk.json").write_text(json.dumps(m))
    problems = verify_bundle(out)
    assert len(problems) == 1 and re.search(r"do not fit resnet34: \d+ missing, 0 unexpected", problems[0])
    with pytest.raises(UsageError, match="does not load"):
        load_backbone(out)


def test_verify_catches_invalid_manifest(tmp_path):
    out = make_bundle(tmp_path / "run")
    m = read_manifest(out)
    del m["files"]["heads.safetensors"]
    m["steps"] = "ten"
    (out / "ssltk.json").write_text(json.dumps(m))
    assert verify_bundle(out) == ["files does not list heads.safetensors", "steps must be an integer"]


def test_not_a_bundle(tmp_path):
    with pytest.raises(UsageError, match="not an ssltk bundle"):
        verify_bundle(tmp_path)
    assert not is_bundle(tmp_path) and not is_bundle(tmp_path / "nope")
    out = make_bundle(tmp_path / "run")
    assert is_bundle(out) and is_bundle(out / "ssltk.json")
    (out / "ssltk.json").unlink()
    with pytest.raises(UsageError, match="unfinished write"):
        read_manifest(out)


def test_newer_format_is_refused(tmp_path):
    out = make_bundle(tmp_path / "run")
    m = read_manifest(out)
    m["format_version"] = BUNDLE_FORMAT_VERSION + 1
    (out / "ssltk.json").write_text(json.dumps(m))
    with pytest.raises(UsageError, match="upgrade ssltk"):
        load_backbone(out)


def test_check_out_dir(tmp_path):
    assert check_out_dir(tmp_path / "new", overwrite=False) == tmp_path / "new"
    out = make_bundle(tmp_path / "run")
    with pytest.raises(UsageError, match=r"already holds a bundle; pass --overwrite or choose another --out"):
        check_out_dir(out, overwrite=False)
    assert check_out_dir(out, overwrite=True) == out
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        check_out_dir(tmp_path / "file", overwrite=True)


def test_update_keeps_train_state_and_drops_old_extras(tmp_path):
    out = make_bundle(tmp_path / "run", extra_files={"old.txt": b"1"})
    save_train_state(out / "train_state", step=5, modules={"m": nn.Linear(2, 2)})
    make_bundle(out, extra_files={"new.txt": b"2"})
    assert not (out / "old.txt").exists() and (out / "new.txt").read_bytes() == b"2"
    assert (out / "train_state" / "state.json").exists()
    assert verify_bundle(out) == []
    assert inspect_bundle(out)["train_state"]["step"] == 5
    assert not [p for p in out.iterdir() if p.name.startswith(".ssltk-write")]


def test_crash_mid_update_leaves_an_incomplete_bundle(tmp_path, monkeypatch):
    out = make_bundle(tmp_path / "run")
    real = bundle_mod.write.os.replace

    def replace(src, dst):
        if Path(dst).name == "heads.safetensors":
            raise OSError("killed (simulated)")
        real(src, dst)

    monkeypatch.setattr(bundle_mod.write.os, "replace", replace)
    with pytest.raises(OSError, match="simulated"):
        make_bundle(out)
    monkeypatch.undo()
    assert not is_bundle(out)  # never a half-written bundle that claims to be complete
    assert not [p for p in out.iterdir() if p.name.startswith(".ssltk-write")]


def test_manifest_must_be_json(tmp_path):
    with pytest.raises(UsageError, match="JSON"):
        write_bundle(tmp_path / "run", backbone=make_backbone(), heads={}, manifest={"metrics": {"x": float("nan")}})
    assert not (tmp_path / "run" / "ssltk.json").exists()


def test_extra_file_names_are_checked(tmp_path):
    backbone = make_backbone()
    for bad in ("../x", "ssltk.json", "train_state/a", "/abs", "model.safetensors"):
        with pytest.raises(UsageError):
            make_bundle(tmp_path / "run", backbone, extra_files={bad: b"x"})
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def _write_shards(out: Path, n: int = 3) -> None:
    with ShardSetWriter(out, max_segments=1) as w:
        for e in range(n):
            meta = SegmentMeta(f"ep{e}", 0, [0, 1], [0.0, 0.1], ["front"], [8, 8])
            w.write(meta, {(0, "front"): b"a" * (e + 1), (1, "front"): b"b"})


def test_describe_data_checksum_from_manifest_equals_hashing_files(tmp_path):
    _write_shards(tmp_path / "shards")
    from_manifest = describe_data(tmp_path / "shards")
    assert from_manifest["checksum_source"] == "manifest" and from_manifest["num_shards"] == 3
    assert from_manifest["segments"] == 3
    (tmp_path / "shards" / "manifest.json").unlink()
    from_files = describe_data(str(tmp_path / "shards" / "shard-{000000..000002}.tar"))
    assert from_files["checksum_source"] == "files"
    assert from_files["checksum"] == from_manifest["checksum"]
    (tmp_path / "shards" / "shard-000001.tar").write_bytes(b"changed")
    assert describe_data(tmp_path / "shards")["checksum"] != from_manifest["checksum"]


def test_plugin_versions_lists_builtins():
    from ssltk.plugins import get_plugin_manager

    versions = plugin_versions(get_plugin_manager())
    assert versions and all(set(v) == {"dist", "version"} for v in versions.values())
    assert "ssltk" in {v["dist"] for v in versions.values()}


def test_inspect_summary(tmp_path):
    out = make_bundle(tmp_path / "run")
    info = inspect_bundle(out)
    assert info["backbone"]["name"] == "resnet18" and info["steps"] == 10 and info["train_state"] is None
    assert info["total_bytes"] == sum(info["files"].values()) > 0
    assert info["data"]["checksum"].startswith("sha256:")
    json.dumps(info)


@pytest.mark.slow
def test_load_with_timm_example_runs_without_ssltk(tmp_path):
    out = make_bundle(tmp_path / "run")
    code = "import sys; sys.modules['ssltk'] = None; import runpy; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "examples" / "load_with_timm.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "resnet18: features (1, 512)" in proc.stdout


def test_docs_show_the_example_verbatim():
    doc = (ROOT / "docs" / "bundle_format.md").read_text()
    example = (ROOT / "examples" / "load_with_timm.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert example in blocks


def test_pm_adds_plugin_versions_and_metadata(tmp_path):
    import ssltk
    from ssltk.plugins import get_plugin_manager

    class Good:
        @ssltk.hookimpl
        def bundle_metadata(self, manifest):
            return {"steps_seen": manifest["steps"]}

    class Bad:
        @ssltk.hookimpl
        def bundle_metadata(self):
            raise RuntimeError("boom")

    pm = get_plugin_manager()
    pm.register_plugin(Good(), "good-meta", dist="good-dist", version="0.1")
    pm.register_plugin(Bad(), "bad-meta")
    backbone = make_backbone()
    manifest = run_manifest()
    del manifest["plugins"]
    out = write_bundle(tmp_path / "run", backbone=backbone, heads={}, manifest=manifest, pm=pm)
    m = read_manifest(out)
    assert m["plugin_metadata"] == {"good-meta": {"steps_seen": 10}}
    assert m["plugins"]["good-meta"] == {"dist": "good-dist", "version": "0.1"}
    assert "bad-meta" not in m["plugins"] and "boom" in pm.infos["bad-meta"].error


def test_load_backbone_accepts_plain_timm_folder_but_not_unfinished_bundle(tmp_path):
    torch.manual_seed(0)
    plain = timm.create_model("resnet18", num_classes=0).eval()
    timm.models.save_for_hf(plain, tmp_path / "plain", safe_serialization=True)
    model, pre = load_backbone(tmp_path / "plain")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))
    assert pre["input_size"] == [3, 224, 224] and len(pre["mean"]) == 3
    out = make_bundle(tmp_path / "run")
    (out / "ssltk.json").unlink()
    with pytest.raises(UsageError, match="unfinished write"):
        load_backbone(out)
