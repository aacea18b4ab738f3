"""Shared helpers for the plugin-system tests: fake installed distributions and tiny test plugins.

``fake_dist`` writes a real ``*.dist-info`` directory (METADATA + entry_points.txt)
and the plugin module next to it on ``sys.path``: ``importlib.metadata`` then
finds it exactly as it finds an installed package.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Callable

import pytest
import torch

import ssltk


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """``fake_dist(dist, modules={name: source}, entry_points={ep: module}, version="1.2.3")``."""
    created: list[str] = []
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))

    def make(dist: str, modules: dict[str, str], entry_points: dict[str, str], version: str = "1.2.3") -> Path:
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
        (info / "entry_points.txt").write_text("[ssltk]\n" + lines)
        for module, source in modules.items():
            (root / f"{module}.py").write_text(textwrap.dedent(source))
            created.append(module)
        return info

    yield make
    for module in created:
        sys.modules.pop(module, None)


class TinyObjective(ssltk.Objective):
    """A tiny test objective: mean squared norm of the valid anchor embeddings."""

    def __init__(self, embed_dim: int, options=None) -> None:
        super().__init__(embed_dim, options)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, emb, batch):
        valid = batch["mask"][:, 0]
        return ssltk.LossOutput(self.scale * emb[:, 0][valid].pow(2).mean())


def objective_plugin(*names: str, aliases: tuple[str, ...] = ()) -> object:
    """A hand-made plugin object registering ``TinyObjective`` subclasses under ``names``."""

    class Plugin:
        @ssltk.hookimpl
        def register_objectives(self, register):
            for i, name in enumerate(names):
                cls = type(f"Tiny{i}", (TinyObjective,), {"__doc__": f"Tiny objective {name}.", "name": ""})
                register(name, cls, aliases=aliases if i == 0 else ())

    return Plugin()


# Source of an installable plugin module registering one objective called ``twin``.
TWIN_SOURCE = '''
import ssltk

class Twin(ssltk.Objective):
    """The twin objective from a fake distribution."""

@ssltk.hookimpl
def register_objectives(register):
    register("twin", Twin)
'''
