"""Helpers for testing ssltk plugins (``docs/testing_plugins.md``).

* :func:`check_objective`, :func:`fake_batch`, :func:`fake_batch_for`: the
  objective contract check and contract-valid fake batches (``ssltk.testing.objectives``);
* :func:`check_backbone`: the backbone-family contract check (``ssltk.testing.backbones``);
* ``ssltk.testing.shards``: tiny episode shards whose images encode their identity.

The pytest fixtures ``ssltk_check_objective``, ``ssltk_check_backbone``,
``ssltk_fake_batch``, ``ssltk_registry`` and ``ssltk_registry_with`` come with
ssltk (``ssltk.testing.pytest_plugin``, loaded by pytest automatically;
``pip install "ssltk[testing]"`` brings pytest).
"""

from ssltk.testing.backbones import check_backbone
from ssltk.testing.objectives import check_objective, fake_batch, fake_batch_for

__all__ = ["check_backbone", "check_objective", "fake_batch", "fake_batch_for"]
