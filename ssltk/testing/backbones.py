"""Contract check for backbone families: :func:`check_backbone`.

``check_backbone(MyFamily())`` is the first test every backbone plugin should
have. It exercises the family the way ssltk does (registry lookup, training,
writing a bundle, loading it back) and raises ``AssertionError`` naming the
family and the failed check. See ``docs/writing_backbones.md``.
"""

from __future__ import annotations

import fnmatch
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from ssltk.backbones import Backbone, BackboneFamily, check_saved_names, validate_backbone
from ssltk.errors import SsltkError

__all__ = ["check_backbone"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")  # what the registry accepts


def _fail(msg: str) -> None:
    raise AssertionError(msg)


def _check_family(fam: BackboneFamily, model: str | None) -> str:
    who = f"backbone family {fam.name!r}"
    if not isinstance(fam.name, str) or not _NAME.match(fam.name):
        _fail(f"{who}: name must be lower case (a-z, 0-9, '-', '_', '.'), got {fam.name!r}")
    if not isinstance(fam.summary, str) or not fam.summary.strip():
        _fail(f"{who}: set summary, the one line `ssltk list-plugins` shows")
    names = fam.list_models()
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        _fail(f"{who}: list_models() must return a non-empty list of model names, got {names!r}")
    if any(":" in n for n in names):
        _fail(f"{who}: model names may not contain ':' (users write FAMILY:MODEL)")
    model = names[0] if model is None else model
    if model not in names:
        _fail(f"{who}: list_models() does not list {model!r}")
    if set(fam.list_models(None)) != set(names):
        _fail(f"{who}: list_models(None) must list every model, like list_models()")
    for pattern in (model[:2] + "*", model, "*", "no-such-model-*"):
        got, want = set(fam.list_models(pattern)), set(fnmatch.filter(names, pattern))
        if got != want:
            _fail(f"{who}: list_models({pattern!r}) returned {sorted(got)[:5]}, fnmatch gives {sorted(want)[:5]}")
    if fam.has_model(model) is not True:
        _fail(f"{who}: has_model({model!r}) must be True for a listed model")
    if fam.has_model("no-such-model-at-all") is not False:
        _fail(f"{who}: has_model() must be False for a name it does not know")
    return model


def _create(fam: BackboneFamily, model: str, case: str, **kwargs: Any) -> Backbone:
    who = f"backbone family {fam.name!r}"
    try:
        backbone = fam.create(model, **kwargs)
    except Exception as exc:
        raise AssertionError(f"{who}: create({model!r}, {case}) raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(backbone, Backbone):
        _fail(f"{who}: create() must return an ssltk.Backbone (subclass it), got {type(backbone).__name__}")
    try:
        validate_backbone(backbone, save=False)
    except SsltkError as exc:
        raise AssertionError(str(exc)) from None
    if backbone.family != fam.name or backbone.model_name != model:
        _fail(f"{who}: the backbone says family={backbone.family!r}, model_name={backbone.model_name!r}; "
              f"want {fam.name!r}, {model!r}")
    return backbone


def _features(backbone: Backbone, x: torch.Tensor, who: str) -> torch.Tensor:
    out = backbone(x)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (x.shape[0], backbone.num_features):
        _fail(f"{who}: forward must return pooled features [N, num_features] = {[x.shape[0], backbone.num_features]}, "
              f"got {getattr(out, 'shape', type(out).__name__)}")
    if not torch.isfinite(out).all():
        _fail(f"{who}: features are not finite")
    return out


def check_backbone(
    family: type[BackboneFamily] | BackboneFamily,
    *,
    model: str | None = None,
    img_size: int = 32,
    batch_size: int = 2,
    kwargs: dict[str, Any] | None = None,
    seed: int = 0,
) -> Backbone:
    """Assert that ``family`` (a class, built with no arguments, or an instance) follows the backbone contract.

    ``model``: the model to build (default: the first of ``list_models()``);
    ``kwargs``: extra ``create`` arguments (the user's ``backbone_kwargs``).
    Checks: ``name``/``summary``; ``list_models`` (fnmatch ``pattern``) and
    ``has_model``; ``create`` with ``img_size=None`` and with ``img_size``;
    the :class:`ssltk.Backbone` attributes; ``forward`` on ``[N, C, H, W]``
    floats gives finite ``[N, num_features]`` with gradients; ``save_pretrained``
    writes a bundle (the same code as the end of training) that
    ``create(model, init=BUNDLE, **model_kwargs)`` - what ``ssltk.load_backbone``
    calls - and ``create(model, img_size=..., init=BUNDLE)`` - what
    ``--init BUNDLE`` calls - load to the same outputs; a missing ``init``
    raises :class:`ssltk.UsageError`. Returns the trained-mode backbone it built.
    """
    from ssltk.bundle import read_manifest, write_bundle

    fam = family() if isinstance(family, type) else family
    if not isinstance(fam, BackboneFamily):
        _fail(f"{type(fam).__name__}: register an instance of a subclass of ssltk.BackboneFamily")
    kwargs = dict(kwargs or {})
    model = _check_family(fam, model)
    who = f"backbone {fam.name}:{model}"
    torch.manual_seed(seed)
    _create(fam, model, "img_size=None", img_size=None, **kwargs)
    backbone = _create(fam, model, f"img_size={img_size}", img_size=img_size, **kwargs)
    c = backbone.data_config["input_size"][0]
    if c != 3:
        _fail(f"{who}: data_config['input_size'] is {backbone.data_config['input_size']}; in_chans=3 gives 3 channels")
    x = torch.randn(batch_size, c, img_size, img_size, generator=torch.Generator().manual_seed(seed))
    backbone.train()
    out = _features(backbone, x, who)
    out.square().mean().backward()
    grads = [p.grad for p in backbone.parameters() if p.requires_grad and p.grad is not None]
    if not grads:
        _fail(f"{who}: no parameter gets a gradient from the features")
    if not all(torch.isfinite(g).all() for g in grads):
        _fail(f"{who}: gradients contain NaN or inf")
    backbone.zero_grad(set_to_none=True)

    backbone.eval()
    with torch.no_grad():
        want = _features(backbone, x, who)
    with tempfile.TemporaryDirectory(prefix="ssltk-check-backbone-") as tmp:
        raw = Path(tmp) / "raw"
        raw.mkdir()
        try:
            check_saved_names(backbone.save_pretrained(raw, {"ssltk": {"check": True}}), raw, who)
        except SsltkError as exc:
            raise AssertionError(str(exc)) from None
        bundle = Path(tmp) / "bundle"
        write_bundle(bundle, backbone=backbone, heads={}, manifest={})
        recorded = read_manifest(bundle)["backbone"]
        calls = {
            "load_backbone": dict(init=str(bundle), **recorded.get("kwargs", {})),
            "--init": dict(img_size=img_size, init=str(bundle), **kwargs),
        }
        for case, call in calls.items():
            torch.manual_seed(seed + 1)  # other random weights: only a real load gives the same outputs
            loaded = _create(fam, model, f"init=BUNDLE ({case})", **call).eval()
            with torch.no_grad():
                got = _features(loaded, x, who)
            if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
                _fail(f"{who}: create({model!r}, {', '.join(call)}) after save_pretrained gives other features "
                      f"(max diff {float((got - want).abs().max()):.3g}); init must load the saved weights")
        try:
            fam.create(model, img_size=img_size, init=str(Path(tmp) / "missing.safetensors"), **kwargs)
        except SsltkError:
            pass
        except Exception as exc:
            _fail(f"{who}: a missing init file must raise ssltk.UsageError (one line for the user), "
                  f"got {type(exc).__name__}: {exc}")
        else:
            _fail(f"{who}: create(init=<missing file>) built a model; it must raise ssltk.UsageError")
    backbone.train()
    return backbone
