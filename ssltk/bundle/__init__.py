"""The deployable bundle: a run's output folder (``docs/bundle_format.md``), format version 1.

::

    OUT/
      model.safetensors   backbone weights, timm-native keys
      config.json         timm config: timm.create_model("local-dir:OUT", pretrained=True) works without ssltk
      heads.safetensors   projection heads, keys "<objective>.<param>"
      ssltk.json          manifest (written last: a folder without a valid one is incomplete)
      train_state/        resumable state (ssltk.checkpoint); its hashes are recorded under "train_state"

Every file is written under a temporary name and moved into place with
``os.replace``; ``ssltk.json`` is removed first and written last, so a crash
mid-update never leaves a bundle that claims to be complete.

The package: ``layout`` (names, format version, manifest keys), ``write``
(:func:`write_bundle`, :func:`describe_data`, :func:`check_out_dir`), ``read``
(:func:`read_manifest`; :func:`load_backbone`, the one loader behind
``ssltk.load_backbone``, the probe, ``embed`` and ``export``; :func:`inspect_bundle`) and
``verify`` (:func:`verify_bundle`).
"""

from __future__ import annotations

from ssltk.bundle.layout import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, MANIFEST_NAME
from ssltk.bundle.read import inspect_bundle, is_bundle, load_backbone, read_manifest, validate_manifest
from ssltk.bundle.verify import verify_bundle
from ssltk.bundle.write import (
    check_out_dir,
    collect_plugin_metadata,
    describe_data,
    plugin_versions,
    runtime_versions,
    write_bundle,
)
from ssltk.fileio import sha256_file  # noqa: F401 - the bundle's file hash
from ssltk.timm_config import complete_timm_config, head_config  # noqa: F401 - re-exported

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "MANIFEST_NAME",
    "check_out_dir",
    "collect_plugin_metadata",
    "describe_data",
    "inspect_bundle",
    "is_bundle",
    "load_backbone",
    "plugin_versions",
    "read_manifest",
    "runtime_versions",
    "validate_manifest",
    "verify_bundle",
    "write_bundle",
]
