"""``lr: auto``: the peak learning rate each objective declares (``Objective.lr``), the smallest of a
composition, 2e-3 when none declares one, and a number in the config always wins."""

from __future__ import annotations

import pytest
import yaml
from torch import nn
from typer.testing import CliRunner

from ssltk.cli import build_app
from ssltk.errors import UsageError
from ssltk.objectives import DEFAULT_LR, resolve_lr
from ssltk.plugins import get_plugin_manager
from ssltk.registry import Registry
from ssltk.train.build import make_optimizer
from ssltk.train.config import load_config


class _Model(nn.Module):
    """What make_optimizer needs of the trained module: parameters and ``objectives``."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        reg = Registry()
        self.backbone = nn.Linear(4, 8)
        self.objectives = nn.ModuleDict({n: reg.objective(n).obj(8) for n in names})


def _peak_lr(names: list[str], overrides: dict) -> float:
    cfg = load_config(None, {"steps": 100, **overrides})
    _, scheduler = make_optimizer(_Model(names), cfg)
    return scheduler.base_values[0]  # the peak of timm's cosine schedule


@pytest.mark.parametrize(
    "names, overrides, expect",
    [
        (["layout-prediction"], {}, 6e-3),  # the default objective's own
        (["temporal-infonce"], {}, DEFAULT_LR),  # declares none: 2e-3, as before lr: auto
        (["per-frame"], {"lr": "auto"}, DEFAULT_LR),
        (["layout-prediction", "temporal-infonce"], {}, DEFAULT_LR),  # a composition: the smallest
        (["layout-prediction"], {"lr": 1e-3}, 1e-3),  # a number wins
    ],
)
def test_peak_lr_of_the_optimizer(names, overrides, expect):
    assert _peak_lr(names, overrides) == pytest.approx(expect)


def test_resolve_lr_takes_the_smallest_counting_undeclared_as_default():
    class A:
        lr = 5e-3

    class B:
        lr = None

    class C:
        lr = 9e-3

    assert resolve_lr("auto", [A]) == 5e-3
    assert resolve_lr("auto", [A, C]) == 5e-3
    assert resolve_lr("auto", [A, B]) == DEFAULT_LR  # B declares none: counts as 2e-3
    assert resolve_lr("auto", [C, B]) == DEFAULT_LR
    assert resolve_lr("auto", [B]) == DEFAULT_LR
    assert resolve_lr("auto", []) == DEFAULT_LR
    assert resolve_lr(0.01, [A]) == 0.01


def test_builtin_layout_prediction_declares_the_measured_lr():
    assert Registry().objective("layout-prediction").obj.lr == 6e-3
    for name in ("temporal-infonce", "per-frame", "multi-camera", "multi-positive", "future-prediction"):
        assert Registry().objective(name).obj.lr is None, name


def test_config_accepts_auto_and_numbers_and_refuses_the_rest():
    assert load_config(None, {}).lr == "auto"
    assert load_config(None, {"lr": "3e-3"}).lr == 3e-3
    for bad in ("fast", -1, 0):
        with pytest.raises(UsageError, match="lr must be"):
            load_config(None, {"lr": bad})


def test_cli_dry_run_shows_auto_and_lr_overrides_it():
    app = build_app(get_plugin_manager())
    r = CliRunner().invoke(app, ["pretrain", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert yaml.safe_load(r.output)["lr"] == "auto"
    r = CliRunner().invoke(app, ["pretrain", "--dry-run", "--lr", "0.004"])
    assert r.exit_code == 0, r.output
    assert yaml.safe_load(r.output)["lr"] == 0.004
