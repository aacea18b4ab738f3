"""The entry point module: ssltk imports it and calls its ``@ssltk.hookimpl`` functions."""

from __future__ import annotations

import ssltk


@ssltk.hookimpl
def register_objectives(register) -> None:
    """Make ``frame-order`` selectable by name (``ssltk pretrain --objective frame-order``)."""
    # Imported here, not at the top: ssltk loads every entry point on every command (even
    # `ssltk --help`), and the objective module imports torch, which takes seconds.
    from ssltk_frame_order.objective import FrameOrder

    register("frame-order", FrameOrder)
