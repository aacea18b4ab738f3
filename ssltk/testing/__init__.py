"""Helpers for testing ssltk plugins.

* :func:`check_objective`, :func:`fake_batch`, :func:`fake_batch_for`: the
  objective contract check and contract-valid fake batches (``ssltk.testing.objectives``);
* ``ssltk.testing.shards``: tiny episode shards whose images encode their identity.

The pytest fixtures ``ssltk_check_objective`` and ``ssltk_fake_batch`` come
with ssltk (``ssltk.testing.pytest_plugin``, loaded by pytest automatically).
"""

from ssltk.testing.objectives import check_objective, fake_batch, fake_batch_for

__all__ = ["check_objective", "fake_batch", "fake_batch_for"]
