"""``ssltk probe``: frozen-feature probes of a bundle against random-init and raw-pixel baselines.

See ``docs/probe.md``. The entry point is :func:`run_probe`; the pieces
(frame table, targets, ridge, retrieval, report) are importable on their own.
The package itself is callable: ``ssltk.probe(bundle, data, **options)`` is ``run_probe``
(the top-level Python API, next to ``ssltk.pretrain``).
"""

import sys as _sys
import types as _types

from ssltk.probe.run import ProbeOptions, run_probe

__all__ = ["ProbeOptions", "run_probe"]


class _CallableModule(_types.ModuleType):
    def __call__(self, bundle=None, data=None, **options):
        """``ssltk.probe(bundle, data, **options)``: :func:`run_probe`, the dict ``ssltk probe --json`` prints."""
        return run_probe(bundle, data, **options)


_sys.modules[__name__].__class__ = _CallableModule
