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
(:class:`~ssltk.data.pipeline.SegmentLoader` does this for you in
``loader.skipped``). Nothing ever sleeps; the first case of each kind in a
worker is logged at WARNING, later ones at DEBUG.

With ``strict=True`` the first case raises :class:`BadDataError`, one line
naming the kind, the shard and the sample key.
"""

from __future__ import annotations

import logging
import os
import tarfile
from collections import Counter
from typing import Any, Iterable, Iterator

from ssltk.errors import UsageError

__all__ = ["BadDataError", "SKIP_KINDS", "SkipCounter", "read_shards", "classify_shard_error", "clean_worker_error"]

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


class BadDataError(UsageError):
    """Bad data met with ``strict=True`` (one line: kind, shard, key, detail)."""


class SkipCounter:
    """Worker-local counts of skipped data, or the strict-mode tripwire."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.counts: Counter[str] = Counter()
        self._logged: set[str] = set()

    def skip(self, kind: str, url: str, key: str = "", detail: str = "") -> None:
        """Record one case of ``kind`` (raise :class:`BadDataError` if strict)."""
        if kind not in _DESCRIBE:
            raise ValueError(f"unknown skip kind {kind!r}")
        where = f"shard {url}" + (f", key {key}" if key else "")
        message = f"{_DESCRIBE[kind]} in {where}" + (f": {detail}" if detail else "")
        if self.strict:
            raise BadDataError(message + " (strict mode; pass strict=False to skip and count bad data)")
        self.counts[kind] += 1
        level = logging.WARNING if kind not in self._logged else logging.DEBUG
        self._logged.add(kind)
        log.log(level, "skipping %s", message)

    def take(self) -> dict[str, int]:
        """Counts since the last call, every kind present (zeros included); resets them."""
        out = {k: int(self.counts.get(k, 0)) for k in SKIP_KINDS}
        self.counts.clear()
        return out


def classify_shard_error(exn: BaseException, samples_read: int) -> str:
    """The skip kind of an exception raised while opening or reading a shard."""
    if isinstance(exn, FileNotFoundError):
        return "missing_shard"
    if isinstance(exn, tarfile.ReadError):
        text = str(exn.args[0]) if exn.args else ""
        if text.startswith("empty file"):
            return "empty_shard"
        if "unexpected end of data" in text or samples_read:
            return "truncated_tar"
        return "not_a_tar"
    if isinstance(exn, (tarfile.TarError, EOFError, OSError)):
        return "truncated_tar" if samples_read else "not_a_tar"
    return "bad_member"


def _detail(exn: BaseException) -> str:
    text = str(exn.args[0]) if exn.args else type(exn).__name__
    return text.split(" @ <")[0]


def tar_looks_cut(url: str) -> bool:
    """True for a local ``.tar`` that lacks the end-of-archive marker (two zero blocks at the end).

    Python's tar reader treats a file cut at a member header as a normal end
    of archive, so this check is what notices such a truncation. Remote URLs
    and compressed tars are not checked.
    """
    if "://" in url or url.startswith("pipe:") or not url.endswith(".tar"):
        return False
    try:
        size = os.path.getsize(url)
        if size == 0:
            return False  # reported as empty_shard
        if size % 512:
            return True
        with open(url, "rb") as f:
            f.seek(max(0, size - 1024))
            return f.read(1024).strip(b"\0") != b""
    except OSError:
        return False


def read_shards(urls: Iterable[dict[str, Any]], counter: SkipCounter) -> Iterator[dict[str, Any]]:
    """Stage: ``{"url": ...}`` dicts -> raw WebDataset samples, counting shard-level problems once per shard.

    Uses webdataset's own tar reader per shard with a recording handler. In a
    truncated shard, the last sample (cut short, so without its ``json``) is
    dropped as part of that one ``truncated_tar`` case.
    """
    from webdataset.tariterators import tarfile_samples

    for src in urls:
        url = src["url"]
        errors: list[BaseException] = []

        def record(exn: BaseException) -> bool:
            errors.append(exn)
            return True

        cut = tar_looks_cut(url)
        n, last_key, held = 0, "", None
        for sample in tarfile_samples(iter([{"url": url}]), handler=record):
            if held is not None:  # one-sample lag: the last sample is judged once the shard ends
                n, last_key = n + 1, held.get("__key__", "")
                yield held
            held = sample
        if held is not None and not ((errors or cut) and "json" not in held):
            n, last_key = n + 1, held.get("__key__", "")
            yield held
        after = f"after {last_key}" if last_key else ""
        if errors:
            counter.skip(classify_shard_error(errors[0], n), url, after, _detail(errors[0]))
        elif cut:
            counter.skip("truncated_tar", url, after, "no end-of-archive marker")
        elif n == 0:
            counter.skip("empty_shard", url, "", "no samples")


def clean_worker_error(exn: BaseException) -> BaseException:
    """A :class:`BadDataError` raised in a DataLoader worker, reduced to its one-line message.

    torch re-raises worker exceptions with the whole worker traceback as the
    message; the original one-line message is the traceback's last line.
    """
    text = str(exn)
    if "Original Traceback" not in text:
        return exn
    marker = f"{BadDataError.__name__}: "
    for line in reversed(text.strip().splitlines()):
        if marker in line:
            return BadDataError(line.split(marker, 1)[1])
    return exn
