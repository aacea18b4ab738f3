"""The loss curve is readable per objective (titled, own scale, smoothed over raw points); shell completion is on."""

from __future__ import annotations

import math
import pytest
from typer.testing import CliRunner

from ssltk.cli import build_app
from ssltk.plugins import get_plugin_manager
from ssltk.train.metrics import plot_loss_curve, smooth


def rows(n: int = 60) -> list[dict]:
    out = []
    for s in range(1, n + 1):
        big = 40.0 - 0.3 * s + (3.0 if s % 2 else -3.0)  # a large, noisy objective
        small = 0.05 + 0.02 * math.exp(-s / 10)  # and one 1000x smaller
        out.append({"step": s, "loss": big + 0.5 * small, "loss/temporal-infonce": big, "loss/per-frame": small})
    return out


def test_smooth_is_a_debiased_ema():
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # no bias toward 0 at the start
    noisy = [10.0 + (1 if i % 2 else -1) for i in range(100)]
    sm = smooth(noisy)
    assert max(sm[20:]) - min(sm[20:]) < 0.5 * (max(noisy) - min(noisy))
    assert math.isnan(smooth([1.0, float("nan"), 1.0])[1])


def test_curve_has_a_title_and_a_panel_per_objective_on_its_own_scale(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    figures = []
    real = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (figures.append(self), real(self, *a, **k))[1])
    data = rows()
    path = plot_loss_curve(data, tmp_path)
    assert path == tmp_path / "loss_curve.png" and path.stat().st_size > 1000
    (fig,) = figures
    assert "temporal-infonce" in fig._suptitle.get_text() and "step 60" in fig._suptitle.get_text()
    panels = {ax.get_title(): ax for ax in fig.axes if ax.axison}
    assert set(panels) == {"total loss", "per-frame", "temporal-infonce"}
    low, high = panels["per-frame"].get_ylim()
    assert high - low < 0.1  # the small objective is not squashed under the large one
    lines = panels["temporal-infonce"].get_lines()
    assert [ln.get_label() for ln in lines] == ["logged", "smoothed"]
    assert lines[0].get_alpha() < 1 and lines[1].get_alpha() in (None, 1)  # raw points faint, the smoothed line solid
    assert lines[1].get_linewidth() > lines[0].get_linewidth()
    assert fig.get_size_inches()[0] >= 8  # readable at half size: wide panels, 11 pt fonts
    assert plot_loss_curve([], tmp_path) is None


def test_shell_completion_is_on():
    app = build_app(get_plugin_manager(load=["ssltk"]))
    result = CliRunner().invoke(app, ["--help"])
    assert "--install-completion" in result.output and "--show-completion" in result.output
    result = CliRunner().invoke(app, [], env={"_SSLTK_COMPLETE": "complete_bash", "COMP_WORDS": "ssltk pre",
                                              "COMP_CWORD": "1"}, prog_name="ssltk")
    assert "pretrain" in result.output.split(), result.output
