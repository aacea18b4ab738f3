"""The entry point module: ssltk imports it and calls its ``@ssltk.hookimpl`` functions."""

from __future__ import annotations

import ssltk

from ssltk_frame_order.objective import FrameOrder


@ssltk.hookimpl
def register_objectives(register) -> None:
    """Make ``frame-order`` selectable by name (``ssltk pretrain --objective frame-order``)."""
    register("frame-order", FrameOrder)
