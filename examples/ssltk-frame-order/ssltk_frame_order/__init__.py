"""ssltk-frame-order: an example third-party ssltk plugin (frame-order verification)."""

__all__ = ["FrameOrder"]


def __getattr__(name: str):
    # Loaded on first use: ssltk imports this package (for its entry point) on every command,
    # including `ssltk --help`, and the objective module imports torch.
    if name == "FrameOrder":
        from ssltk_frame_order.objective import FrameOrder

        return FrameOrder
    raise AttributeError(f"module 'ssltk_frame_order' has no attribute {name!r}")
