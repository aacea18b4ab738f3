"""The one device resolver: ``--device auto|cpu|cuda|cuda:N`` for pretrain, probe, embed and bundle loading."""

from __future__ import annotations

from typing import Any

import torch

from ssltk.errors import UsageError


def resolve_device(name: Any = "auto") -> torch.device:
    """``auto`` (or None, "") → CUDA when available, else CPU; a name or ``torch.device`` as given.

    ``UsageError`` in one line for a name torch does not know and for CUDA on a machine without it.
    """
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise UsageError(f"--device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    return dev
