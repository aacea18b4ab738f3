"""Test-wide settings: builtins only, one thread, no stray plugins from the machine."""

from __future__ import annotations

import os

import pytest

# Installed third-party plugins (the example package included) must not leak into
# tests unless a test asks for them explicitly.
os.environ["SSLTK_LOAD_PLUGINS"] = "ssltk"
os.environ.pop("SSLTK_DISABLE_PLUGINS", None)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(1)
