"""Where and how a run executes: device, precision, memory format (process group: ``ssltk.distributed``)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ssltk.device import resolve_device
from ssltk.distributed import init_process_group, on_main_then_sync  # noqa: F401 - on_main_then_sync re-exported
from ssltk.errors import UsageError


@dataclass
class Runtime:
    """Resolved execution settings of this process."""

    device: torch.device
    amp_dtype: torch.dtype | None  # None = fp32
    channels_last: bool
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def precision(self) -> str:
        return "bf16" if self.amp_dtype is torch.bfloat16 else "fp32"

    def autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def _cpu_flags() -> set[str]:
    """The CPU feature flags the kernel reports (``flags`` lines of /proc/cpuinfo); empty if unreadable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.partition(":")[2].split()}


def cpu_bf16_kind() -> str | None:
    """``"amx"`` (AMX-BF16 tiles), ``"avx512_bf16"`` (AVX512-BF16 dot products) or None (no native bf16)."""
    flags = _cpu_flags()
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return None


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AMX or AVX512-BF16 (bf16 matmul/conv run natively, via oneDNN).

    Without either (AVX2-only, or AVX512 without BF16, or a non-Linux host where /proc/cpuinfo
    is missing) oneDNN emulates bf16, which is slower than fp32, so ``auto`` picks fp32.
    """
    return cpu_bf16_kind() is not None


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32":
        return None
    fast = (device.type == "cuda" and torch.cuda.is_bf16_supported()) or (device.type == "cpu" and cpu_has_fast_bf16())
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UsageError("--precision bf16: this GPU has no bf16 support; use --precision fp32")
        return torch.bfloat16
    return torch.bfloat16 if fast else None


def make_runtime(device: str, precision: str, channels_last: str) -> Runtime:
    dev = resolve_device(device)  # first: a missing GPU is a one-line error, also under torchrun
    if dev.type == "cuda" and dev.index is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError(f"--device {device}: under torchrun each rank uses cuda:LOCAL_RANK; pass --device cuda or auto")
    rank, world, local = init_process_group(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", local)
    amp = resolve_precision(precision, dev)
    if channels_last == "auto":
        cl = amp is not None  # channels_last pays off with bf16 kernels (GPU, AMX); not for fp32 on AVX2
    else:
        cl = channels_last == "on"
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return Runtime(dev, amp, cl, rank, world, local)


def set_cpu_threads(requested: int) -> int:
    """Compute threads for a CPU run: ``requested``, else every core this process may use.

    Loader workers are not subtracted: once training is compute-bound a worker needs
    ~0.1 % of a core (measured: 4 ms of loading per 7 s resnet18 step at 96 px), and
    giving its core away halves the compute. On the quiet 2-core machine, with one
    worker: 1 compute thread 9.6 samples/s, 2 threads 17.6 (a bare loop: 18.1).
    ``OMP_NUM_THREADS`` wins if set (e.g. to leave cores to other jobs on a busy machine).
    """
    if requested > 0:
        n = requested
    elif os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    else:
        try:
            n = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            n = os.cpu_count() or 1
    torch.set_num_threads(max(1, n))
    return max(1, n)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def is_conv_net(module: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1) for m in module.modules())
