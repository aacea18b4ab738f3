"""What an objective asks of each batch sample, and the union of those asks.

An objective declares a :class:`ViewRequest`; the trainer builds one
:class:`ViewPlan` for all selected objectives (computed once, never configured
twice). The plan fixes the batch layout ``frames[B, T, V, C, H, W]``:

* slot ``t`` (index 0) is always the anchor frame;
* slot ``t:aug`` is a second augmented copy of the anchor, if any objective asks;
* then one slot per distinct :class:`DeltaRange`, a partner at ``t + Δt``.

Cameras are the union of the requested ones, in the data's camera order.
Each objective later sees only its own slots and cameras (``ssltk.batch.select``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Sequence

from ssltk.errors import UnknownNameError, UsageError

Unit = Literal["frames", "seconds"]
_NUM = r"([0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
_RANGE = re.compile(rf"^\s*{_NUM}\s*(s|f)?\s*(?:(?:-|\.\.|:)\s*{_NUM}\s*(s|f)?)?\s*$")


@dataclass(frozen=True)
class DeltaRange:
    """A range of positive time offsets ``lo <= Δt <= hi`` in frames or seconds."""

    lo: float
    hi: float
    unit: Unit = "frames"

    def __post_init__(self) -> None:
        if self.unit not in ("frames", "seconds"):
            raise UsageError(f"Δt unit must be 'frames' or 'seconds', not {self.unit!r}")
        if not (0 < self.lo <= self.hi):
            raise UsageError(f"Δt range {self.lo}..{self.hi} must satisfy 0 < lo <= hi")
        if self.unit == "frames" and (self.lo != int(self.lo) or self.hi != int(self.hi)):
            raise UsageError(f"Δt in frames must be whole numbers, got {self.lo}..{self.hi}")

    @classmethod
    def parse(cls, text: str | int | float | Sequence) -> "DeltaRange":
        """Parse ``4``, ``"2-10"``, ``"2..10"``, ``"0.2s-1s"`` or ``[2, 10]``."""
        if isinstance(text, DeltaRange):
            return text
        if isinstance(text, (int, float)):
            return cls(float(text), float(text))
        if isinstance(text, (list, tuple)) and len(text) == 2:
            return cls(float(text[0]), float(text[1]))
        m = _RANGE.match(str(text))
        if not m:
            raise UsageError(f"cannot read Δt {text!r}: write 4, 2-10 (frames) or 0.2s-1s (seconds)")
        lo, u1, hi, u2 = m.groups()
        hi = hi if hi is not None else lo
        unit: Unit = "seconds" if "s" in (u1, u2) else "frames"
        return cls(float(lo), float(hi), unit)

    @property
    def label(self) -> str:
        suffix = "s" if self.unit == "seconds" else "f"
        fmt = (lambda v: f"{v:g}")
        if self.lo == self.hi:
            return f"t+{fmt(self.lo)}{suffix}"
        return f"t+{fmt(self.lo)}..{fmt(self.hi)}{suffix}"

    def max_frames(self, fps: float) -> int:
        """Largest offset in frames at ``fps`` (to check against stored segment length)."""
        return int(self.hi) if self.unit == "frames" else int(round(self.hi * fps))


@dataclass(frozen=True)
class ViewRequest:
    """The views one objective needs from every sample.

    ``cameras``: ``"anchor"`` (the run's anchor camera, default ``front``),
    ``"all"`` (every camera in the data) or explicit names.
    ``augmented_copy``: a second, independently augmented copy of the anchor frame.
    ``deltas``: one temporal partner slot per range (``t + Δt``).
    ``augment``: the objective is meant to see augmented frames. When the run's
    augmentation is left on ``auto``, a request with ``augment=True`` turns on the
    geometry-safe views (photometric jitter and blur, one crop box per sample, the
    rig-aware mirror), as ``augmented_copy`` turns on the per-frame augmentation.
    """

    cameras: str | tuple[str, ...] = "anchor"
    augmented_copy: bool = False
    deltas: tuple[DeltaRange, ...] = ()
    augment: bool = False


@dataclass(frozen=True)
class Selection:
    """Which slots and cameras of the batch one objective sees (in its requested order)."""

    slots: tuple[int, ...]
    cameras: tuple[int, ...]


@dataclass
class ViewPlan:
    """The union of view requests: the batch layout and each objective's selection."""

    slots: list[str]
    deltas: list[DeltaRange | None]  # per slot; None for t and t:aug
    cameras: list[str]
    selections: dict[str, Selection] = field(default_factory=dict)
    augment_requested: bool = False  # some request has augment=True

    @property
    def augmented_copy_slot(self) -> int | None:
        return self.slots.index("t:aug") if "t:aug" in self.slots else None

    @classmethod
    def build(
        cls,
        requests: dict[str, ViewRequest],
        data_cameras: Sequence[str],
        anchor_camera: str | None = None,
    ) -> "ViewPlan":
        """Union of ``requests`` (objective name -> request) against the data's cameras."""
        data_cameras = list(data_cameras)
        if not data_cameras:
            raise UsageError("the data has no cameras")
        anchor = anchor_camera or ("front" if "front" in data_cameras else data_cameras[0])
        if anchor not in data_cameras:
            raise UnknownNameError("camera", anchor, data_cameras, "the data's cameras")

        def cams_of(req: ViewRequest) -> list[str]:
            if req.cameras == "anchor":
                return [anchor]
            if req.cameras == "all":
                return list(data_cameras)
            names = [req.cameras] if isinstance(req.cameras, str) else list(req.cameras)
            for n in names:
                if n not in data_cameras:
                    raise UnknownNameError("camera", n, data_cameras, "the data's cameras")
            return names

        wanted = set()
        for req in requests.values():
            wanted.update(cams_of(req))
        cameras = [c for c in data_cameras if c in wanted]

        slots, deltas = ["t"], [None]
        if any(r.augmented_copy for r in requests.values()):
            slots.append("t:aug")
            deltas.append(None)
        for req in requests.values():
            for d in req.deltas:
                if d not in deltas:
                    slots.append(d.label)
                    deltas.append(d)

        plan = cls(slots, deltas, cameras, augment_requested=any(r.augment for r in requests.values()))
        for name, req in requests.items():
            idx = [0]
            if req.augmented_copy:
                idx.append(slots.index("t:aug"))
            idx += [deltas.index(d) for d in req.deltas]
            plan.selections[name] = Selection(tuple(idx), tuple(cameras.index(c) for c in cams_of(req)))
        return plan

    def describe(self) -> dict:
        return {
            "slots": self.slots,
            "cameras": self.cameras,
            "objectives": {k: {"slots": list(v.slots), "cameras": list(v.cameras)} for k, v in self.selections.items()},
        }
