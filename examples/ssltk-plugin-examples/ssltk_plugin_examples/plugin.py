"""The entry-point module: two objectives and one backbone family."""

from __future__ import annotations

import ssltk


@ssltk.hookimpl
def register_objectives(register) -> None:
    # Imported inside the hook: the implementations import torch, which takes seconds.
    from ssltk_plugin_examples.contrast import PairContrast
    from ssltk_plugin_examples.vicreg import TemporalVICReg

    register("temporal-vicreg", TemporalVICReg)
    register("pair-contrast", PairContrast)


@ssltk.hookimpl
def register_backbones(register) -> None:
    from ssltk_plugin_examples.smallcnn import SmallCNNFamily

    register(SmallCNNFamily())  # an instance, not the class
