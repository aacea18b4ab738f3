"""Bad data: skip and count it (default), or stop at the first case (``strict``).

Kinds counted (the keys of ``batch["skipped"]``):

================ ===========================================================
kind             what happened (and what is dropped)
================ ===========================================================
missing_shard    a shard path does not exist (whole shard)
not_a_tar        a shard that is not a tar file (whole shard)
empty_shard      a tar with no samples, or a 0-byte file
truncated_tar    a tar cut short: samples before the cut are kept
no_json          a sample without its ``json`` metadata (sample)
bad_json         metadata that is not a valid ssltk segment (sample)
corrupt_image    an image that does not decode (the training samples using it)
bad_member       any other tar-level error, e.g. duplicate member names
================ ===========================================================

Counts are kept per DataLoader worker and travel with each batch as
``batch["skipped"]``: the counts since that worker's previous batch, so
summing ``batch["skipped"]`` over all batches gives the totals across workers
(:class:`~ssltk.data.stream.pipeline.SegmentLoader` does this for you in
``loader.skipped``). Nothing ever sleeps; the first case of each kind in a
process is logged at WARNING, later ones at DEBUG (:func:`mark_warned` tells
the process about kinds its DataLoader workers already reported, so workers
forked later stay quiet about them).

With ``strict=True`` the first case raises :class:`BadDataError`, one line
naming the kind, the shard and the sample key, and how to skip instead.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Iterable

from ssltk.errors import UsageError

__all__ = ["BadDataError", "SKIP_KINDS", "SkipCounter", "clean_worker_error", "mark_warned"]

log = logging.getLogger("ssltk.data")

SKIP_KINDS = (
    "missing_shard",
    "not_a_tar",
    "empty_shard",
    "truncated_tar",
    "no_json",
    "bad_json",
    "corrupt_image",
    "bad_member",
)

_DESCRIBE = {
    "missing_shard": "missing shard",
    "not_a_tar": "shard is not a tar file",
    "empty_shard": "empty shard",
    "truncated_tar": "truncated tar",
    "no_json": "sample without json metadata",
    "bad_json": "bad json metadata",
    "corrupt_image": "corrupt image",
    "bad_member": "unreadable tar member",
}


STRICT_HINT = "strict mode: rerun with --lenient (config strict_data: false) to skip and count bad data"
_WARNED: set[str] = set()  # kinds already logged at WARNING in this process


def mark_warned(kinds: Iterable[str]) -> None:
    """Log later cases of these kinds at DEBUG only (e.g. kinds a finished loader's workers reported)."""
    _WARNED.update(kinds)


class BadDataError(UsageError):
    """Bad data met with ``strict=True`` (one line: kind, shard, key, detail)."""


class SkipCounter:
    """Worker-local counts of skipped data, or the strict-mode tripwire."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.counts: Counter[str] = Counter()

    def skip(self, kind: str, url: str, key: str = "", detail: str = "") -> None:
        """Record one case of ``kind`` (raise :class:`BadDataError` if strict)."""
        if kind not in _DESCRIBE:
            raise ValueError(f"unknown skip kind {kind!r}")
        where = f"shard {url}" + (f", key {key}" if key else "")
        message = f"{_DESCRIBE[kind]} in {where}" + (f": {detail}" if detail else "")
        if self.strict:
            raise BadDataError(f"{message} ({STRICT_HINT})")
        self.counts[kind] += 1
        level = logging.WARNING if kind not in _WARNED else logging.DEBUG
        _WARNED.add(kind)
        log.log(level, "skipping %s", message)

    def take(self) -> dict[str, int]:
        """Counts since the last call, every kind present (zeros included); resets them."""
        out = {k: int(self.counts.get(k, 0)) for k in SKIP_KINDS}
        self.counts.clear()
        return out


def clean_worker_error(exn: BaseException) -> BaseException:
    """An ssltk error raised in a DataLoader worker, reduced to its one-line message.

    torch re-raises worker exceptions with the whole worker traceback as the
    message; the original one-line message is the traceback's last line
    (``package.module.ErrorClass: message``). Errors from the main process
    come back unchanged.
    """
    text = str(exn)
    if "Original Traceback" not in text:
        return exn
    marker = f"{type(exn).__name__}: "
    for line in reversed(text.strip().splitlines()):
        if marker in line:
            message = line.split(marker, 1)[1]
            try:
                return type(exn)(message)
            except TypeError:  # an error class with another constructor
                return UsageError(message)
    return exn
