"""What timm needs in a bundle's ``config.json`` to swap the head: ``create_model("local-dir:B", pretrained=True,
num_classes=K)`` keeps the trained backbone and builds a fresh ``K``-way head (docs/bundle_format.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def head_config(architecture: str, backbone: Any = None) -> dict[str, Any]:
    """What timm needs to swap a timm-layout bundle's head: the ``classifier`` module name(s) from the
    registry's default config for ``architecture``, ``num_features`` and ``global_pool`` (from ``backbone``)."""
    out: dict[str, Any] = {}
    try:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(architecture.split(".")[0])
    except Exception:  # noqa: BLE001 - not a timm architecture: nothing to add
        cfg = None
    if cfg is not None and cfg.classifier:
        out["classifier"] = cfg.classifier
    model = getattr(backbone, "model", backbone)
    if backbone is not None and getattr(backbone, "num_features", None):
        out["num_features"] = int(backbone.num_features)
    pool = getattr(model, "global_pool", None)
    pool = pool if isinstance(pool, str) else getattr(pool, "pool_type", None)
    if isinstance(pool, str) and pool:
        out["global_pool"] = pool
    return out


def complete_timm_config(path: Path, backbone: Any = None) -> None:
    """Fill what a timm-layout ``config.json`` lacks for ``create_model(..., pretrained=True, num_classes=K)``:
    ``pretrained_cfg.classifier`` (timm drops and re-creates that module), ``num_classes`` 0 in both places,
    ``num_features`` and ``global_pool``. Values the backbone family wrote are kept."""
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    arch = cfg.get("architecture")
    pre = cfg.get("pretrained_cfg")
    if not isinstance(arch, str) or not isinstance(pre, dict):
        return  # not timm's layout (a plugin family's own config)
    head = head_config(arch, backbone)
    before = json.dumps(cfg, sort_keys=True)
    if "classifier" in head:
        pre.setdefault("classifier", head["classifier"])
    pre.setdefault("num_classes", 0)
    cfg.setdefault("num_classes", 0)
    for key in ("num_features", "global_pool"):
        if key in head:
            cfg.setdefault(key, head[key])
    if json.dumps(cfg, sort_keys=True) != before:
        path.write_text(json.dumps(cfg, indent=2) + "\n")
