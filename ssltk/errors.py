"""Exceptions that the CLI turns into one friendly line (exit code 2)."""

from __future__ import annotations

import difflib
from typing import Iterable


class SsltkError(Exception):
    """Base class: a user-facing problem with a one-line message that says how to fix it."""

    exit_code = 2


class UsageError(SsltkError):
    """Bad input from the user: a path, a value, a config key."""


class UnknownNameError(SsltkError, KeyError):
    """A name (objective, backbone, config key, camera) that is not known; suggests close matches."""

    def __init__(
        self, kind: str, name: str, known: Iterable[str], hint: str = "", aliases: dict[str, str] | None = None
    ) -> None:
        """``aliases``: other names users reach for -> the known name they mean (``learning_rate`` -> ``lr``)."""
        self.kind, self.name = kind, name
        known = sorted(set(known))
        aliases = {a: t for a, t in (aliases or {}).items() if t in known}
        self.suggestions = []
        for hit in difflib.get_close_matches(str(name), known + sorted(aliases), n=4, cutoff=0.5):
            target = aliases.get(hit, hit)
            if target not in self.suggestions:
                self.suggestions.append(target)
        self.suggestions = self.suggestions[:3]
        msg = f"unknown {kind} {name!r}"
        if self.suggestions:
            msg += "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        elif known and len(known) <= 12:
            msg += "; known: " + ", ".join(known)
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DuplicateNameError(SsltkError):
    """Two plugins registered the same name."""


class BrokenPluginError(SsltkError):
    """A command needs something that a broken plugin should have provided."""


def one_line(exc: BaseException) -> str:
    """``"TypeName: first line of the message"`` (just the type name when the message is empty)."""
    try:
        text = str(exc).strip().splitlines()
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails is still described
        text = []
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
