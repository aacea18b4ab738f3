"""ssltk-frame-order: an example third-party ssltk plugin (frame-order verification)."""

from ssltk_frame_order.objective import FrameOrder

__all__ = ["FrameOrder"]
