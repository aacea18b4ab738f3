"""The backbone contract: families of named feature extractors.

A plugin registers an *instance* of a :class:`BackboneFamily` subclass (e.g.
``timm``: every ``timm.list_models()`` name). ``family.create(model, ...)``
returns a :class:`Backbone`: an ``nn.Module`` mapping float images
``[N, C, H, W]`` to pooled features ``[N, num_features]``, which also knows its
preprocessing and how to save itself as deployable weights. No timm import here.

The full contract, with a worked example, is ``docs/writing_backbones.md``;
:func:`ssltk.testing.check_backbone` checks it, and the trainer runs
:func:`validate_backbone` on the backbone it built before the first step.
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from ssltk.errors import UsageError, one_line

# Names in a bundle folder that belong to ssltk, never to a backbone's save_pretrained.
RESERVED_FILES = ("ssltk.json", "heads.safetensors", "train_state")


class Backbone(nn.Module):
    """A pooled feature extractor with the metadata a bundle needs.

    Subclass it (it is an ``nn.Module``) and set, in ``__init__``:

    * ``num_features`` (int > 0): width of ``forward``'s output ``[N, num_features]``;
    * ``data_config``: ``{"mean": [C floats], "std": [C floats], "input_size": [C, H, W],
      "interpolation": str}``, the preprocessing recorded in the bundle;
    * ``family`` (the family's ``name``), ``model_name`` (the name passed to ``create``)
      and ``model_kwargs`` (a JSON-serialisable dict): ``family.create(model_name,
      init=BUNDLE, **model_kwargs)`` must rebuild this architecture.
    """

    num_features: int
    data_config: dict[str, Any]
    family: str
    model_name: str
    model_kwargs: dict[str, Any]

    def save_pretrained(self, directory: Path, extra_config: dict[str, Any]) -> list[str]:
        """Write deployable weights and config into ``directory``; return the file names written.

        ``directory`` exists and is empty (a staging folder of the bundle writer);
        ``extra_config`` is a JSON-serialisable dict (``{"ssltk": {...}}``) to store
        in the config file you write. Return names relative to ``directory``; never
        write ``ssltk.json``, ``heads.safetensors`` or ``train_state``.
        """
        raise NotImplementedError


class BackboneFamily:
    """A named family of backbones. Subclass, set ``name`` and ``summary``, implement ``list_models`` and ``create``.

    Register an instance (``register(MyFamily())``). ``has_model`` defaults to
    membership in ``list_models()``; override it when listing is expensive.
    """

    name: str = ""
    summary: str = ""

    def list_models(self, pattern: str | None = None) -> list[str]:
        """Model names in this family; with ``pattern``, only those matching it as an fnmatch pattern."""
        raise NotImplementedError

    def has_model(self, model: str) -> bool:
        """True if ``create(model)`` builds something (the registry resolves bare names with it)."""
        return model in self.list_models()

    def create(
        self,
        model: str,
        *,
        img_size: int | None = None,
        in_chans: int = 3,
        init: str | None = None,
        **kwargs: Any,
    ) -> Backbone:
        """Build ``model``: random init, or weights from ``init``.

        ``img_size``: the training image size, or ``None`` (when ssltk rebuilds a
        bundle's backbone; use your default or what ``model_kwargs`` recorded).
        ``init``: ``None``, a local weights file or an ssltk bundle folder
        (``ssltk.load_backbone`` passes the bundle it loads); the family reads it
        itself and raises :class:`ssltk.UsageError` if it cannot. ``kwargs``: the
        user's ``backbone_kwargs`` (or a bundle's ``model_kwargs``).
        """
        raise NotImplementedError

    @staticmethod
    def filter_names(names: list[str], pattern: str | None) -> list[str]:
        """``names`` matching the fnmatch ``pattern`` (all of them for ``None``), for ``list_models``."""
        return filter_names(names, pattern)


def filter_names(names: list[str], pattern: str | None) -> list[str]:
    return list(names) if not pattern else [n for n in names if fnmatch.fnmatch(n, pattern)]


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _check_attributes(backbone: Any, who: str) -> None:
    problems = []
    nf = getattr(backbone, "num_features", None)
    if isinstance(nf, bool) or not isinstance(nf, int) or nf <= 0:
        problems.append(f"num_features must be an int > 0, got {nf!r}")
    for attr in ("family", "model_name"):
        if not isinstance(getattr(backbone, attr, None), str) or not getattr(backbone, attr):
            problems.append(f"{attr} must be a non-empty str, got {getattr(backbone, attr, None)!r}")
    kw = getattr(backbone, "model_kwargs", None)
    if not isinstance(kw, dict) or not _json_ok(kw):
        problems.append(f"model_kwargs must be a JSON-serialisable dict, got {kw!r}")
    dc = getattr(backbone, "data_config", None)
    if not isinstance(dc, dict) or not {"mean", "std", "input_size"} <= set(dc):
        problems.append('data_config must be a dict with "mean", "std", "input_size" and "interpolation"')
    else:
        size = dc["input_size"]
        if not (isinstance(size, (list, tuple)) and len(size) == 3 and all(isinstance(v, int) and v > 0 for v in size)):
            problems.append(f"data_config['input_size'] must be [C, H, W] positive ints, got {size!r}")
        else:
            for key in ("mean", "std"):
                vals = dc[key]
                if not (isinstance(vals, (list, tuple)) and len(vals) == size[0]):
                    problems.append(f"data_config[{key!r}] must hold {size[0]} numbers (one per channel), got {vals!r}")
        if not isinstance(dc.get("interpolation", "bilinear"), str):
            problems.append(f"data_config['interpolation'] must be a str, got {dc.get('interpolation')!r}")
    if problems:
        raise UsageError(f"{who}: {'; '.join(problems)} (see docs/writing_backbones.md)")


def _check_save_signature(backbone: Any, who: str) -> None:
    save = getattr(backbone, "save_pretrained", None)
    if not callable(save):
        raise UsageError(f"{who}: has no save_pretrained(directory, extra_config) method (see docs/writing_backbones.md)")
    try:
        inspect.signature(save).bind(Path("."), {})
    except TypeError as exc:
        raise UsageError(
            f"{who}: save_pretrained{inspect.signature(save)} cannot be called as save_pretrained(directory, extra_config) "
            f"({exc}); see docs/writing_backbones.md"
        ) from None
    except ValueError:  # no signature (a builtin): nothing to check
        pass


def check_saved_names(names: Any, directory: Path, who: str) -> list[str]:
    """The names ``save_pretrained`` returned, checked against what it wrote into ``directory``."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise UsageError(f"{who}: save_pretrained must return the list of file names it wrote, got {names!r}")
    for n in names:
        if not n or Path(n).is_absolute() or ".." in Path(n).parts:
            raise UsageError(f"{who}: save_pretrained returned {n!r}; give names relative to the directory")
        if Path(n).parts[0] in RESERVED_FILES:
            raise UsageError(f"{who}: save_pretrained wrote {n!r}, a name the bundle reserves for ssltk")
        if not (directory / n).is_file():
            raise UsageError(f"{who}: save_pretrained returned {n!r}, but wrote no such file")
    return list(names)


def validate_backbone(backbone: Any, *, save: bool = True) -> None:
    """Raise :class:`ssltk.UsageError` unless ``backbone`` can be trained and saved as a bundle.

    Checks the attributes of :class:`Backbone`, that ``save_pretrained`` can be
    called as ``save_pretrained(directory, extra_config)`` and, with ``save``,
    runs it once into a temporary folder and checks the names it returns. The
    trainer calls it before the first step, so that a broken backbone fails
    there and not when the bundle is written after training.
    """
    who = f"backbone {getattr(backbone, 'family', '?')}:{getattr(backbone, 'model_name', '?')}"
    if not isinstance(backbone, nn.Module):
        raise UsageError(f"{who}: a backbone must be a torch.nn.Module (subclass ssltk.Backbone), got {type(backbone).__name__}")
    _check_attributes(backbone, who)
    _check_save_signature(backbone, who)
    if not save:
        return
    with tempfile.TemporaryDirectory(prefix="ssltk-save-check-") as tmp:
        try:
            names = backbone.save_pretrained(Path(tmp), {"ssltk": {"check": True}})
        except Exception as exc:  # noqa: BLE001 - any failure here would otherwise come after training
            raise UsageError(f"{who}: save_pretrained fails ({one_line(exc)}); it would fail after training") from None
        check_saved_names(names, Path(tmp), who)
