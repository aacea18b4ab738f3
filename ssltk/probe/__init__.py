"""``ssltk probe``: frozen-feature probes of a bundle against random-init and raw-pixel baselines.

See ``docs/probe.md``. The entry point is :func:`run_probe`; the pieces
(frame table, targets, ridge, retrieval, report) are importable on their own.
"""

from ssltk.probe.run import ProbeOptions, run_probe

__all__ = ["ProbeOptions", "run_probe"]
