"""Name -> implementation tables, filled by running the ``register_*`` hooks.

The host owns naming: each entry records the plugin and the distribution that
provided it; two providers of one name is an error naming both; an unknown
name lists close matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from ssltk.errors import BrokenPluginError, DuplicateNameError, UnknownNameError, UsageError
from ssltk.plugins import PluginInfo, SsltkPluginManager, call_each, get_plugin_manager

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


@dataclass(frozen=True)
class Entry:
    """One registered item."""

    kind: str  # "objective" | "backbone"
    name: str
    obj: Any
    summary: str
    plugin: PluginInfo

    def as_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "name": self.name,
            "summary": self.summary,
            "plugin": self.plugin.name,
            "dist": self.plugin.dist,
            "version": self.plugin.version,
        }


def first_line(text: str | None) -> str:
    for line in (text or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


class Registry:
    """Objectives and backbone families from every loaded plugin."""

    def __init__(self, pm: SsltkPluginManager | None = None) -> None:
        self.pm = pm if pm is not None else get_plugin_manager()
        self.objectives: dict[str, Entry] = {}
        self.aliases: dict[str, str] = {}
        self.backbones: dict[str, Entry] = {}
        self._collect("register_objectives", self._add_objective)
        self._collect("register_backbones", self._add_backbone)

    # -- collection ---------------------------------------------------------
    def _collect(self, hook_name: str, add: Callable[..., None]) -> None:
        # One implementation at a time: a plugin that raises is marked broken and
        # what it registered before raising is dropped, the others are kept.
        def each(call: Callable[..., Any], info: PluginInfo) -> None:
            staged: list[tuple[tuple, dict]] = []
            call(register=lambda *a, **k: staged.append((a, k)))
            for args, kwargs in staged:
                add(info, *args, **kwargs)

        call_each(self.pm, hook_name, each, passthrough=(DuplicateNameError,))

    def _check_new(self, table: dict[str, Entry], kind: str, name: str, info: PluginInfo) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"invalid {kind} name {name!r}: use lower-case letters, digits, '-', '_', '.'")
        other = table.get(name) or (table.get(self.aliases[name]) if name in self.aliases else None)
        if other is not None:
            raise DuplicateNameError(
                f"{kind} {name!r} is registered twice: by plugin {other.plugin.name!r} "
                f"({other.plugin.dist} {other.plugin.version}) and by plugin {info.name!r} "
                f"({info.dist} {info.version}); uninstall one or block it with SSLTK_DISABLE_PLUGINS"
            )

    def _add_objective(self, info: PluginInfo, name: str, cls: Any, *, aliases: tuple[str, ...] = ()) -> None:
        self._check_new(self.objectives, "objective", name, info)
        for alias in aliases:
            self._check_new(self.objectives, "objective", alias, info)
        summary = getattr(cls, "summary", None) or first_line(cls.__doc__)
        self.objectives[name] = Entry("objective", name, cls, summary, info)
        if getattr(cls, "name", None) in (None, ""):
            cls.name = name
        for alias in aliases:
            self.aliases[alias] = name

    def _add_backbone(self, info: PluginInfo, family: Any) -> None:
        name = getattr(family, "name", None)
        self._check_new(self.backbones, "backbone family", name, info)
        summary = getattr(family, "summary", None) or first_line(type(family).__doc__)
        self.backbones[name] = Entry("backbone", name, family, summary, info)

    # -- lookup ---------------------------------------------------------------
    def entries(self, kind: str | None = None) -> list[Entry]:
        out = []
        if kind in (None, "objective"):
            out += sorted(self.objectives.values(), key=lambda e: e.name)
        if kind in (None, "backbone"):
            out += sorted(self.backbones.values(), key=lambda e: e.name)
        return out

    def _broken_hint(self) -> str:
        broken = self.pm.broken
        if not broken:
            return ""
        names = ", ".join(f"{b.name} ({b.dist})" for b in broken)
        return f"broken plugins that may have provided it: {names}; see `ssltk list-plugins`"

    def objective(self, name: str) -> Entry:
        """The entry for objective ``name`` (or an alias); ``UnknownNameError`` with suggestions."""
        key = self.aliases.get(name, name)
        if key in self.objectives:
            return self.objectives[key]
        known = list(self.objectives) + list(self.aliases)
        hint = self._broken_hint()
        if hint and not known:
            raise BrokenPluginError(f"no objective {name!r}: {hint}")
        raise UnknownNameError("objective", name, known, hint)

    def _refuse_tagged(self, name: str, families: list[Entry]) -> None:
        """``resnet50.a1_in1k``: a pretrained-weights tag on a known model; ssltk never downloads weights."""
        base, dot, tag = name.partition(".")
        if dot and tag and base and any(e.obj.has_model(base) for e in families):
            raise UsageError(
                f"backbone {name!r} names pretrained hub weights, which ssltk never downloads; use {base!r} "
                f"and pass local weights with --init PATH (docs/backbones.md)"
            )

    def backbone(self, name: str) -> tuple[Entry, str]:
        """Resolve ``family:model`` or a bare model name to ``(family entry, model name)``."""
        if not isinstance(name, str) or not name.strip():
            raise UnknownNameError("backbone", str(name), list(self.backbones), "give a model name such as resnet18")
        if ":" in name:
            fam, _, model = name.partition(":")
            if fam in self.backbones:
                entry = self.backbones[fam]
                if not entry.obj.has_model(model):
                    self._refuse_tagged(model, [entry])
                    raise UnknownNameError(
                        f"{fam} backbone", model, entry.obj.list_models(), f"`ssltk list-plugins --kind backbone`"
                    )
                return entry, model
        hits = [e for e in self.backbones.values() if e.obj.has_model(name)]
        if len(hits) == 1:
            return hits[0], name
        if len(hits) > 1:
            opts = ", ".join(f"{e.name}:{name}" for e in hits)
            raise DuplicateNameError(f"backbone {name!r} is provided by several families; pick one: {opts}")
        self._refuse_tagged(name, list(self.backbones.values()))
        known: list[str] = list(self.backbones)
        for entry in self.backbones.values():
            known += entry.obj.list_models()
        raise UnknownNameError("backbone", name, known, self._broken_hint())
