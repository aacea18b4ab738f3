"""The batch contract: one dict layout that serves every objective.

See ``docs/batch_contract.md``. Shapes (B samples, T time slots, V cameras):

============== ================== =========================================
key            dtype / shape      meaning
============== ================== =========================================
frames         uint8 [B,T,V,C,H,W] images; float after ``normalize`` on device
mask           bool  [B,T,V]      True where the frame exists and is valid
episode        int64 [B,T]        episode id (stable hash of the episode name)
frame_index    int64 [B,T]        frame number inside the episode
timestamp      float64 [B,T]      seconds since the episode start
dt             float32 [B,T]      seconds relative to slot 0 (the anchor)
slots          list[str] (T)      slot names: ``t``, ``t:aug``, ``t+2..10f``...
cameras        list[str] (V)      camera names
ego            dict[str, float32 [B,T]]  ego fields the data has (NaN = unknown)
============== ================== =========================================

An optional ``skipped`` dict (kind -> count) carries bad-data counts from the
loader workers to the training loop.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from ssltk.errors import SsltkError

Batch = dict[str, Any]

_TENSOR_KEYS = {
    # key: (dtypes allowed, dims description)
    "mask": ((torch.bool,), "[B, T, V]"),
    "episode": ((torch.int64,), "[B, T]"),
    "frame_index": ((torch.int64,), "[B, T]"),
    "timestamp": ((torch.float64, torch.float32), "[B, T]"),
    "dt": ((torch.float32, torch.float64), "[B, T]"),
}


class BatchContractError(SsltkError, ValueError):
    """A batch that does not follow ``docs/batch_contract.md``."""


def episode_id(name: str) -> int:
    """Stable 63-bit integer id for an episode name (same on every rank and run)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") >> 1


def validate_batch(batch: Batch) -> tuple[int, int, int]:
    """Check ``batch`` against the contract; return ``(B, T, V)`` or raise naming the key and shape."""
    for key in ("frames", "mask", "episode", "frame_index", "timestamp", "dt", "slots", "cameras"):
        if key not in batch:
            raise BatchContractError(f"batch is missing key {key!r} (see docs/batch_contract.md)")
    frames = batch["frames"]
    if not isinstance(frames, torch.Tensor) or frames.dim() != 6:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise BatchContractError(f"batch['frames'] must be a tensor [B, T, V, C, H, W], got {shape}")
    if frames.dtype != torch.uint8 and not frames.is_floating_point():
        raise BatchContractError(f"batch['frames'] must be uint8 or float, got {frames.dtype}")
    B, T, V = frames.shape[:3]
    expect = {"[B, T, V]": (B, T, V), "[B, T]": (B, T)}
    for key, (dtypes, dims) in _TENSOR_KEYS.items():
        value = batch[key]
        want = expect[dims]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != want:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise BatchContractError(f"batch[{key!r}] must have shape {dims} = {want}, got {got}")
        if value.dtype not in dtypes:
            raise BatchContractError(f"batch[{key!r}] must be {' or '.join(map(str, dtypes))}, got {value.dtype}")
    if len(batch["slots"]) != T:
        raise BatchContractError(f"batch['slots'] must list T={T} slot names, got {len(batch['slots'])}")
    if len(batch["cameras"]) != V:
        raise BatchContractError(f"batch['cameras'] must list V={V} camera names, got {len(batch['cameras'])}")
    for name, value in (batch.get("ego") or {}).items():
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != (B, T):
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise BatchContractError(f"batch['ego'][{name!r}] must have shape [B, T] = {(B, T)}, got {got}")
    return B, T, V


def select(batch: Batch, slots: tuple[int, ...], cameras: tuple[int, ...]) -> Batch:
    """The sub-batch with only ``slots`` (time axis) and ``cameras`` (view axis), in that order."""
    s = torch.as_tensor(slots, dtype=torch.long)
    c = torch.as_tensor(cameras, dtype=torch.long)
    out: Batch = dict(batch)
    out["frames"] = batch["frames"].index_select(1, s.to(batch["frames"].device)).index_select(
        2, c.to(batch["frames"].device)
    )
    mask = batch["mask"]
    out["mask"] = mask.index_select(1, s.to(mask.device)).index_select(2, c.to(mask.device))
    for key in ("episode", "frame_index", "timestamp", "dt"):
        out[key] = batch[key].index_select(1, s.to(batch[key].device))
    out["slots"] = [batch["slots"][i] for i in slots]
    out["cameras"] = [batch["cameras"][i] for i in cameras]
    out["ego"] = {k: v.index_select(1, s.to(v.device)) for k, v in (batch.get("ego") or {}).items()}
    return out


def select_embeddings(emb: torch.Tensor, slots: tuple[int, ...], cameras: tuple[int, ...]) -> torch.Tensor:
    """``emb[:, slots][:, :, cameras]`` for embeddings shaped ``[B, T, V, D]``."""
    s = torch.as_tensor(slots, dtype=torch.long, device=emb.device)
    c = torch.as_tensor(cameras, dtype=torch.long, device=emb.device)
    return emb.index_select(1, s).index_select(2, c)


def to_device(batch: Batch, device: torch.device | str, non_blocking: bool = True) -> Batch:
    """Move every tensor (and ego tensors) to ``device``; lists stay as they are."""
    out: Batch = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            out[key] = value.to(device, non_blocking=non_blocking)
        elif key == "ego":
            out[key] = {k: v.to(device, non_blocking=non_blocking) for k, v in value.items()}
        else:
            out[key] = value
    return out


def normalize(frames: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], dtype=torch.float32) -> torch.Tensor:
    """uint8 ``[..., C, H, W]`` -> float ``(x/255 - mean) / std`` (done on the training device)."""
    m = torch.tensor(mean, device=frames.device, dtype=dtype).view(-1, 1, 1)
    s = torch.tensor(std, device=frames.device, dtype=dtype).view(-1, 1, 1)
    return (frames.to(dtype) / 255.0 - m) / s
