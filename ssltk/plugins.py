"""The plugin manager: loading plugins from the ``ssltk`` entry-point group.

Builtins (``ssltk_builtins``) are declared as entry points of the ``ssltk``
distribution, so they load through the same call a third-party package uses.

Environment switches:

* ``SSLTK_LOAD_PLUGINS=dist1,dist2`` loads only the entry points of these
  distributions (``ssltk`` = builtins only; empty = nothing).
* ``SSLTK_DISABLE_PLUGINS=name1,name2`` blocks entry points by name
  (``timm``) or by distribution (``ssltk-frame-order``).
* ``SSLTK_TRACE_PLUGINS=1`` prints every hook call to stderr.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Iterable

import pluggy

from ssltk import hookspecs
from ssltk.errors import one_line

GROUP = "ssltk"


@dataclass(frozen=True)
class PluginInfo:
    """One loaded (or broken) plugin: entry-point name, its distribution, and why it is broken."""

    name: str
    dist: str
    version: str
    module: str
    error: str | None = None

    @property
    def broken(self) -> bool:
        return self.error is not None


class SsltkPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers which distribution provided each plugin and which failed."""

    def __init__(self) -> None:
        pluggy.PluginManager.__init__(self, hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}  # plugin name -> provenance (broken ones too)
        self.installed: list[str] = []  # distributions that declare ssltk entry points
        self.unknown_load: list[str] = []  # names asked for in SSLTK_LOAD_PLUGINS that no distribution has

    def info_for(self, plugin: object) -> PluginInfo:
        """Provenance of a registered plugin object; plugins registered by hand get ``dist='-'``."""
        name = self.get_name(plugin) or getattr(plugin, "__name__", repr(plugin))
        return self.infos.get(name) or PluginInfo(name, "-", "-", getattr(plugin, "__name__", name))

    def register_plugin(
        self, plugin: object, name: str, dist: str = "-", version: str = "-", module: str | None = None
    ) -> None:
        """Register ``plugin`` under ``name`` with its provenance (``module``: the entry point's value)."""
        self.register(plugin, name=name)
        self.infos[name] = PluginInfo(name, dist, version, module or getattr(plugin, "__name__", name))

    def mark_broken(self, info: PluginInfo, exc: BaseException) -> None:
        """Record plugin ``info`` as broken by ``exc`` (its one-line description is shown in listings)."""
        self.infos[info.name] = PluginInfo(info.name, info.dist, info.version, info.module, one_line(exc))
        self.trace_line("broken", info.name, f"({info.dist} {info.version}):", one_line(exc))

    def trace_line(self, *words: object) -> None:
        """One line of the plugin trace (written to stderr only with ``SSLTK_TRACE_PLUGINS``)."""
        self.trace.root.get("ssltk")(*words)

    @property
    def broken(self) -> list[PluginInfo]:
        return [i for i in self.infos.values() if i.broken]


def _split_env(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {v.strip() for v in value.split(",") if v.strip()}


def _entry_points() -> Iterable[tuple[metadata.EntryPoint, metadata.Distribution]]:
    seen: set[tuple[str, str]] = set()
    for dist in metadata.distributions():
        dist_name = dist.metadata["Name"] or "?"
        for ep in dist.entry_points:
            if ep.group != GROUP:
                continue
            key = (dist_name, ep.name)
            if key in seen:  # the same dist can appear twice on sys.path
                continue
            seen.add(key)
            yield ep, dist


def get_plugin_manager(
    load: Iterable[str] | None = None,
    blocked: Iterable[str] = (),
    plugins: Iterable[tuple[str, object]] = (),
) -> SsltkPluginManager:
    """Build a fresh plugin manager.

    ``load``: distribution names whose entry points load (default: the
    ``SSLTK_LOAD_PLUGINS`` environment variable, else all). ``blocked``:
    entry-point or distribution names to skip (plus ``SSLTK_DISABLE_PLUGINS``).
    ``plugins``: extra ``(name, object)`` pairs registered by hand (tests).

    A plugin that fails to import or register is recorded as broken, never raised.
    """
    pm = SsltkPluginManager()
    if os.environ.get("SSLTK_TRACE_PLUGINS"):
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    allowed = set(load) if load is not None else _split_env(os.environ.get("SSLTK_LOAD_PLUGINS"))
    block = set(blocked) | (_split_env(os.environ.get("SSLTK_DISABLE_PLUGINS")) or set())
    installed: set[str] = set()
    for ep, dist in _entry_points():
        dist_name, version = dist.metadata["Name"], dist.version
        installed.add(dist_name)
        if allowed is not None and dist_name not in allowed:
            continue
        if ep.name in block or dist_name in block or pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register_plugin(plugin, ep.name, dist_name, version, ep.value)
            pm.trace_line("loaded", ep.name, f"({dist_name} {version})", "from", ep.value)
        except Exception as exc:  # a broken plugin must not take the CLI down
            if pm.has_plugin(ep.name):
                pm.unregister(name=ep.name)
            pm.mark_broken(PluginInfo(ep.name, dist_name, version, ep.value), exc)
    pm.installed = sorted(installed)
    if load is None and allowed:  # a typo in the environment variable must not look like "no plugins"
        pm.unknown_load = sorted(allowed - installed)
    for name, plugin in plugins:
        pm.register_plugin(plugin, name)
    while True:  # a misspelled hook implementation makes its plugin broken, not silent
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as exc:
            info = pm.info_for(exc.plugin)
            pm.unregister(exc.plugin)
            pm.mark_broken(info, exc)
    return pm


def check_load_names(pm: SsltkPluginManager) -> None:
    """``UnknownNameError`` (with close matches) if ``SSLTK_LOAD_PLUGINS`` names a distribution that is not installed."""
    if pm.unknown_load:
        from ssltk.errors import UnknownNameError

        raise UnknownNameError(
            "distribution in SSLTK_LOAD_PLUGINS", pm.unknown_load[0], pm.installed,
            "comma-separated distribution names; 'ssltk' alone loads the builtins",
        )  # fmt: skip


def format_exception(exc: BaseException) -> str:
    """Full traceback text (for ``--verbose`` paths)."""
    return "".join(traceback.format_exception(exc))


def call_each(
    pm: SsltkPluginManager,
    hook_name: str,
    each: Callable[[Callable[..., Any], PluginInfo], None] | None = None,
    *,
    passthrough: tuple[type[BaseException], ...] = (),
    **kwargs: Any,
) -> None:
    """Call ``hook_name`` on each plugin one by one; a plugin that raises is marked broken.

    pluggy stops a hook call at the first exception, so one faulty plugin would
    hide every other; calling the implementations one at a time keeps the rest.
    Without ``each`` every implementation is called with ``kwargs``; with it,
    ``each(call, info)`` runs per plugin, ``call(**kwargs)`` calling that plugin's
    implementation, so that what ``each`` does with the result (and raises) is
    charged to the plugin too. Exceptions in ``passthrough`` are raised, not charged.
    """
    caller = getattr(pm.hook, hook_name)
    for impl in reversed(caller.get_hookimpls()):
        pm.trace_line("call", hook_name, "->", impl.plugin_name)

        def call(_impl: Any = impl, **kw: Any) -> Any:
            return _impl.function(*[kw[a] for a in _impl.argnames])

        try:
            if each is None:
                call(**kwargs)
            else:
                each(call, pm.info_for(impl.plugin))
        except passthrough:
            raise
        except Exception as exc:
            pm.mark_broken(pm.info_for(impl.plugin), exc)

