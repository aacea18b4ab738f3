"""``ssltk.__version__``, where every module can read it without importing the package face."""

from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("ssltk")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0+unknown"
