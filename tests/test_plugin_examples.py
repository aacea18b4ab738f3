"""The plugin guide's worked examples (examples/ssltk-plugin-examples), installed the way pip would.

The package is "installed" by writing its ``*.dist-info`` (METADATA and the
entry points of its pyproject.toml) next to it on ``sys.path``: importlib.metadata
then finds it exactly as it finds a pip-installed package, so ssltk discovers
it through its entry point. Tests written the way the guide tells plugin authors
to write theirs (fixtures, closed forms, naive references), plus training it
composed with a builtin, loading its bundle, and DDP on two gloo ranks.
"""

from __future__ import annotations

import json
import math
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import ssltk
from dist_helpers import run_ranks

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "examples" / "ssltk-plugin-examples"
DIST = "ssltk-plugin-examples"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``ssltk-plugin-examples`` importable and discoverable by its entry point; SSLTK_LOAD_PLUGINS lets it load."""
    project = tomllib.loads((PKG / "pyproject.toml").read_text())["project"]
    site = tmp_path_factory.mktemp("site")
    info = site / f"{DIST.replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    eps = "".join(f"{k} = {v}\n" for k, v in project["entry-points"]["ssltk"].items())
    (info / "entry_points.txt").write_text("[ssltk]\n" + eps)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(PKG))
        mp.syspath_prepend(str(site))
        mp.setenv("SSLTK_LOAD_PLUGINS", f"ssltk,{DIST}")
        yield project
    for name in [m for m in sys.modules if m.startswith("ssltk_plugin_examples")]:
        sys.modules.pop(name)


@pytest.fixture
def registry(installed, ssltk_registry_with):
    return ssltk_registry_with(DIST)


def test_found_through_the_entry_point(registry, installed):
    for kind, name in (("objective", "temporal-vicreg"), ("objective", "pair-contrast"), ("backbone", "smallcnn")):
        entry = (registry.objectives if kind == "objective" else registry.backbones)[name]
        assert (entry.plugin.name, entry.plugin.dist, entry.plugin.version) == ("plugin-examples", DIST, installed["version"])
    family, model = registry.backbone("smallcnn-8")  # a bare name: only this family has it
    assert family.name == "smallcnn" and model == "smallcnn-8"
    assert registry.objectives["temporal-vicreg"].summary.startswith("VICReg between t and t+Δt")


def test_plugin_modules_import_only_the_public_api():
    for path in (PKG / "ssltk_plugin_examples").glob("*.py"):
        text = path.read_text()
        assert "from ssltk." not in text and "import ssltk." not in text, path.name


# -- the contract checks, as the guide's testing page shows them ----------------------------


def test_objectives_pass_the_contract(installed, ssltk_check_objective):
    from ssltk_plugin_examples.contrast import PairContrast
    from ssltk_plugin_examples.vicreg import TemporalVICReg

    out = ssltk_check_objective(TemporalVICReg, options={"hidden_dim": 16, "proj_dim": 8})
    assert {"invariance", "variance", "covariance", "emb_std", "effective_rank"} <= set(out.metrics)
    assert all(isinstance(v, float) for v in out.metrics.values())
    ssltk_check_objective(TemporalVICReg, options={"proj_dim": 0, "cameras": "all"})
    ssltk_check_objective(PairContrast, options={"guard": 3, "cameras": "all"})


def test_backbone_family_passes_the_contract(installed, ssltk_check_backbone):
    from ssltk_plugin_examples.smallcnn import SmallCNNFamily

    backbone = ssltk_check_backbone(SmallCNNFamily())
    assert backbone.num_features == 32  # the first model listed, smallcnn-8: 4 x 8
    ssltk_check_backbone(SmallCNNFamily(), model="smallcnn-8", kwargs={"norm": "group"})


# -- the math ---------------------------------------------------------------------------------


def _vicreg(**options):
    from ssltk_plugin_examples.vicreg import TemporalVICReg

    return TemporalVICReg.from_options(4, proj_dim=0, **options)  # no expander: the loss sees the features


def naive_vicreg(a, b, lam=25.0, mu=25.0, nu=1.0, gamma=1.0, eps=1e-4):
    """VICReg written out with loops (float64)."""
    a, b = a.double(), b.double()
    n, p = a.shape
    sim = sum(float(((a[i] - b[i]) ** 2).sum()) for i in range(n)) / (n * p)

    def var_cov(x):
        mean = [sum(float(x[i, j]) for i in range(n)) / n for j in range(p)]
        cov = [[sum((float(x[i, j]) - mean[j]) * (float(x[i, k]) - mean[k]) for i in range(n)) / (n - 1)
                for k in range(p)] for j in range(p)]
        v = sum(max(0.0, gamma - math.sqrt(cov[j][j] + eps)) for j in range(p)) / p
        c = sum(cov[j][k] ** 2 for j in range(p) for k in range(p) if j != k) / p
        return v, c

    (va, ca), (vb, cb) = var_cov(a), var_cov(b)
    return lam * sim + mu * (va + vb) + nu * (ca + cb)


def test_vicreg_matches_a_naive_reference(installed):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 4, generator=g), torch.randn(7, 4, generator=g) * 0.3
    out = _vicreg().loss_from(a, b, a)
    assert out.loss.item() == pytest.approx(naive_vicreg(a, b), rel=1e-5)
    out = _vicreg(sim_weight=2.0, var_weight=0.5, cov_weight=3.0, gamma=0.7).loss_from(a, b, a)
    assert out.loss.item() == pytest.approx(naive_vicreg(a, b, 2.0, 0.5, 3.0, 0.7), rel=1e-5)


def test_vicreg_closed_forms(installed):
    # Identical views, identical rows: no invariance, full variance penalty 2(γ − sqrt(ε)), no covariance.
    same = torch.ones(5, 4)
    out = _vicreg().loss_from(same, same, same)
    assert out.metrics["invariance"] == 0.0 and out.metrics["covariance"] == 0.0
    assert out.metrics["variance"] == pytest.approx(2 * (1 - math.sqrt(1e-4)), rel=1e-6)
    assert out.metrics["emb_std"] == pytest.approx(0.0, abs=1e-6) and out.metrics["effective_rank"] == pytest.approx(1.0, abs=1e-4)
    # Rows ±2 e_k (every std 2 > γ, dimensions uncorrelated): only the invariance term, b = a + 1.
    e = torch.eye(4) * 2
    a = torch.cat([e, -e])
    out = _vicreg().loss_from(a, a + 1, a)
    assert out.metrics["variance"] == 0.0 and out.metrics["covariance"] == pytest.approx(0.0, abs=1e-12)
    assert out.loss.item() == pytest.approx(25.0 * 1.0)


def test_vicreg_uses_only_complete_pairs(installed, ssltk_fake_batch):
    obj = _vicreg()
    batch = ssltk_fake_batch(6, ("t", ssltk.DeltaRange(1, 2)), episode_length=100, seed=1)
    batch["mask"][0, 1] = False  # sample 0 loses its partner
    emb = torch.randn(6, 2, 1, 4) * batch["mask"][..., None]
    out = obj(emb, batch)
    ref = obj.loss_from(emb[1:, 0, 0], emb[1:, 1, 0], emb[1:, 0, 0])
    torch.testing.assert_close(out.loss, ref.loss)
    assert out.metrics["pairs"] == 5.0


def test_pair_contrast_masks(installed, ssltk_fake_batch):
    """Positives: the other slot of the same sample and camera; exclusions: same episode within guard."""
    from ssltk_plugin_examples.contrast import PairContrast

    obj = PairContrast.from_options(4, guard=1)
    batch = ssltk_fake_batch(4, ("t", ssltk.DeltaRange(3, 3)), ("front", "left"), episodes=1, episode_length=100, seed=2)
    rows = ssltk.Rows.from_batch(batch, torch.device("cpu"))
    m = obj.masks(rows, rows)
    for i in range(len(rows.valid)):
        for k in range(len(rows.valid)):
            partner = rows.sample[i] == rows.sample[k] and rows.camera[i] == rows.camera[k] and rows.slot[i] != rows.slot[k]
            assert bool(m.positives[i, k]) == bool(partner)
            assert bool(m.exclude[i, k]) == bool(abs(int(rows.frame[i]) - int(rows.frame[k])) <= 1)


# -- DDP: two gloo ranks reproduce the single-process loss and gradients ----------------------

SPLIT = ((0, 2), (2, 7))  # uneven on purpose: 2 and 5 samples


def _inputs(name: str):
    sys.path[:0] = [str(PKG)] if str(PKG) not in sys.path else []  # the spawned/forked worker imports the package
    from ssltk_plugin_examples.contrast import PairContrast
    from ssltk_plugin_examples.vicreg import TemporalVICReg
    from ssltk.testing import fake_batch_for

    torch.manual_seed(0)
    cls = {"temporal-vicreg": TemporalVICReg, "pair-contrast": PairContrast}[name]
    obj = cls.from_options(6, hidden_dim=8, proj_dim=5, cameras="all")
    batch = fake_batch_for(obj, B=7, cameras=("front", "left"), episodes=2, episode_length=40, missing=0.2, seed=3)
    x = torch.randn(*batch["mask"].shape, 5, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    torch.manual_seed(1)
    return obj.double(), batch, x, torch.nn.Linear(5, 6).double()  # float64: exact zeros stay ~1e-15


def _run(obj, batch, x, lin, lo=None, hi=None):
    if lo is not None:
        batch = {k: (v[lo:hi] if torch.is_tensor(v) else v) for k, v in batch.items()}
        x = x[lo:hi]
    x = x.clone().requires_grad_(True)
    out = obj(lin(x) * batch["mask"][..., None], batch)
    out.loss.backward()
    grads = {f"lin.{n}": p.grad.clone() for n, p in lin.named_parameters()}
    grads.update({n: p.grad.clone() for n, p in obj.named_parameters()})
    return out.loss.detach(), grads, x.grad.clone()


def _ddp_worker(rank: int, world: int) -> dict:
    results = {}
    for name in ("temporal-vicreg", "pair-contrast"):
        loss, grads, x_grad = _run(*_inputs(name), *SPLIT[rank])
        torch.distributed.all_reduce(loss)
        for g in grads.values():  # what DDP does with parameter gradients
            torch.distributed.all_reduce(g)
            g /= world
        results[name] = (loss / world, grads, x_grad)
    return results


@pytest.mark.dist
def test_ddp_gives_the_single_process_loss_and_gradients(installed, tmp_path):
    ranks = run_ranks(_ddp_worker, str(tmp_path))
    for name in ("temporal-vicreg", "pair-contrast"):
        loss, grads, x_grad = _run(*_inputs(name))
        for r in ranks:
            got_loss, got_grads, _ = r[name]
            torch.testing.assert_close(got_loss, loss, rtol=1e-9, atol=1e-12)
            for key, g in grads.items():
                torch.testing.assert_close(got_grads[key], g, rtol=1e-8, atol=1e-11, msg=lambda m: f"{name}: {key}: {m}")
        # the global loss is the mean of the rank losses: each rank's input gradient is W times the reference
        torch.testing.assert_close(torch.cat([r[name][2] for r in ranks]) / 2, x_grad, rtol=1e-8, atol=1e-11)


# -- training, composed with a builtin, and the bundle ----------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    from ssltk.testing.shards import write_tiny_shards

    d = tmp_path_factory.mktemp("shards")
    write_tiny_shards(d, episodes=4, length=20, cameras=("front", "rear"), image_size=32, segment_length=10, overlap=4)
    return d


def _pretrain(args: list[str]):
    from ssltk.cli import build_app

    return CliRunner().invoke(build_app(ssltk.get_plugin_manager()), ["pretrain", *args])


@pytest.mark.slow
def test_trains_composed_with_a_builtin_and_the_bundle_loads(installed, shards, tmp_path):
    out = tmp_path / "run"
    r = _pretrain(["--data", str(shards), "--out", str(out), "--steps", "3", "--backbone", "smallcnn-8",
                   "--image-size", "32", "--batch-size", "8", "--num-workers", "0",
                   "-o", "temporal-vicreg", "-o", "pair-contrast=0.5", "-o", "per-frame=0.5",
                   "--set", "temporal-vicreg.proj_dim=32", "--set", "temporal-vicreg.hidden_dim=32",
                   "--set", "log_every=1", "--set", "checkpoint_every=3"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]
    assert all(math.isfinite(row[f"loss/{n}"]) for row in rows for n in ("temporal-vicreg", "pair-contrast", "per-frame"))
    assert {"temporal-vicreg/variance", "temporal-vicreg/emb_std", "pair-contrast/top1"} <= set(rows[-1])
    manifest = json.loads((out / "ssltk.json").read_text())
    # objectives[].plugin: the distribution; plugins: keyed by entry-point name.
    assert {o["name"]: o["plugin"] for o in manifest["objectives"]} == {
        "temporal-vicreg": DIST, "pair-contrast": DIST, "per-frame": "ssltk"}
    assert manifest["plugins"]["plugin-examples"]["dist"] == DIST
    assert manifest["backbone"]["family"] == "smallcnn" and manifest["backbone"]["kwargs"] == {"norm": "batch", "in_chans": 3}
    from ssltk.bundle import verify_bundle

    assert verify_bundle(out) == []
    model, pre = ssltk.load_backbone(out)  # rebuilt by the installed family
    assert pre["input_size"] == [3, 32, 32] and model.num_features == 32
    import timm

    with pytest.raises(Exception):  # not a timm architecture: plain timm cannot load this bundle
        timm.create_model(f"local-dir:{out}", pretrained=True)


@pytest.mark.slow
def test_bundle_of_a_plugin_family_needs_the_plugin(installed, shards, tmp_path, monkeypatch):
    out = tmp_path / "run"
    r = _pretrain(["--data", str(shards), "--out", str(out), "--steps", "1", "--backbone", "smallcnn:smallcnn-8",
                   "--image-size", "32", "--batch-size", "8", "--num-workers", "0", "-o", "per-frame"])
    assert r.exit_code == 0, r.output
    monkeypatch.setenv("SSLTK_LOAD_PLUGINS", "ssltk")
    with pytest.raises(ssltk.UsageError, match="family 'smallcnn' is not installed"):
        ssltk.load_backbone(out)


class _BadSave:
    """A plugin whose family's save_pretrained forgets ``extra_config``."""

    @ssltk.hookimpl
    def register_backbones(self, register):
        from ssltk_plugin_examples.smallcnn import SmallCNN, SmallCNNFamily

        class Forgetful(SmallCNN):
            def save_pretrained(self, directory):
                return super().save_pretrained(directory, {})

        class Family(SmallCNNFamily):
            name = "badcnn"

            def list_models(self, pattern=None):
                return self.filter_names(["badcnn-8"], pattern)

            def create(self, model, *, img_size=None, in_chans=3, init=None, **kwargs):
                backbone = Forgetful("smallcnn-8", img_size=img_size or 32)
                backbone.family, backbone.model_name = "badcnn", model
                return backbone

        register(Family())


def test_a_wrong_save_pretrained_fails_before_the_first_step(installed, shards, tmp_path):
    from ssltk.train.config import ObjectiveSpec, TrainConfig
    from ssltk.train.loop import pretrain

    registry = ssltk.Registry(ssltk.get_plugin_manager(load=["ssltk"], plugins=[("bad-save", _BadSave())]))
    cfg = TrainConfig(backbone="badcnn-8", data=str(shards), out=str(tmp_path / "run"), steps=50, batch_size=8,
                      image_size=32, num_workers=0)
    cfg.objectives = [ObjectiveSpec("per-frame", 1.0)]
    with pytest.raises(ssltk.UsageError, match=r"backbone badcnn:badcnn-8: save_pretrained\(directory\) cannot be called"):
        pretrain(cfg, registry=registry)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
