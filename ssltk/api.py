"""The top-level Python API: ``ssltk.pretrain``, ``ssltk.probe``, ``ssltk.embed``, ``ssltk.export``.

The same work as the commands, returning what they print::

    import ssltk

    result = ssltk.pretrain(objectives=["temporal-infonce", "multi-camera=0.5"], backbone="resnet18",
                            data="shards/", out="runs/tmc", steps=600, lr=1e-3)
    result.out, result.final["loss"]                   # ssltk.train.loop.RunResult, as the summary shows it
    report = ssltk.probe(result.out)                   # the dict `ssltk probe --json` prints
    ssltk.embed(result.out, data="shards/", out="features.parquet")
    ssltk.export(result.out, format="onnx")

``ssltk.train`` is the package of the training loop (``ssltk.train.loop.pretrain`` takes a
``TrainConfig``); ``ssltk.pretrain`` is the call with keyword arguments. ``ssltk.probe`` is
both the probe package and, called, :func:`ssltk.probe.run_probe` (``ssltk/probe/__init__.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence


def _objectives(value: Any) -> Any:
    """``"a"``, ``["a", "b=0.5"]``, ``[("a", 1.0)]`` or ``{"a": {"weight": 1, "dt": "2-6"}}`` -> config form."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return dict(value)
    out = []
    for item in value:
        if isinstance(item, (tuple, list)) and len(item) == 2:
            out.append({"name": str(item[0]), "weight": float(item[1])})
        else:
            out.append(item)
    return out


def pretrain(
    *,
    objectives: str | Sequence[Any] | Mapping[str, Any] | None = None,
    backbone: str | None = None,
    data: str | Path | None = None,
    out: str | Path | None = None,
    config: str | Path | None = None,
    resume: bool | str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **options: Any,
):
    """Pretrain and write a bundle; return the :class:`~ssltk.train.loop.RunResult` the CLI summarises.

    ``objectives``: a name, a list of names or ``NAME=WEIGHT`` strings or ``(name, weight)``
    pairs, or a mapping ``{name: {"weight": w, option: value}}``; default: the recipe's.
    ``config``: a YAML file, applied first (the arguments override it). ``options``: any other
    config key of ``ssltk pretrain`` (``steps``, ``lr``, ``batch_size``, ``image_size``,
    ``loggers``, ...; docs/pretrain.md); an unknown key is an error that suggests close ones.
    ``resume``: None continues an interrupted run of the same config in ``out`` (True: always
    continue it; False: refuse to start over one). A run folder (or ``""``: the newest run in
    ``out``) continues that run with its own ``run_config.yaml``, as ``ssltk pretrain --resume RUN``:
    only ``steps`` and run-time options may be given. ``progress``: a bar on a terminal, log
    lines (logger ``ssltk.train``) otherwise; False shows nothing.
    """
    from ssltk.train.config import load_config

    values: dict[str, Any] = dict(options)
    for key, value in (("backbone", backbone), ("data", data)):
        if value is not None:
            values[key] = str(value)
    if objectives is not None:
        values["objectives"] = _objectives(objectives)
    if isinstance(resume, (str, Path)):
        from ssltk.train.resume import RUNTIME_KEYS, resume_config

        given = [k for k in values if k not in RUNTIME_KEYS and k != "decode"] + (["config"] if config else [])
        cfg = resume_config(resume, out=out, runtime=values, given=given)
        resume = True
    else:
        cfg = load_config(config, {**values, **({"out": str(out)} if out is not None else {})})
    return run_pretrain(cfg, resume=resume, overwrite=overwrite, progress=progress)


def run_pretrain(cfg: Any, registry: Any = None, *, resume: bool | None = None, overwrite: bool = False,
                 progress: bool = True, on_start: Any = None):
    """:func:`ssltk.train.loop.pretrain` as ``ssltk pretrain`` and :func:`pretrain` show it: the bar on a
    terminal, log lines otherwise (``progress=False``: nothing); the resumed run is announced."""
    from ssltk.cli._util import console
    from ssltk.cli.progress import training_progress
    from ssltk.train.loop import pretrain as _pretrain

    def say(line: str) -> None:
        console.print(line, markup=False, soft_wrap=True)

    with training_progress(console, enabled=progress) as on_step:
        return _pretrain(cfg, registry=registry, resume=resume, overwrite=overwrite, progress=on_step,
                         say=say if progress else None, on_start=on_start)


def embed(bundle: str | Path, data: Any = None, out: str | Path = "embeddings.parquet", **kwargs: Any):
    """:func:`ssltk.embedding.embed`: features of every frame; returns :class:`ssltk.embedding.EmbedResult`."""
    from ssltk.embedding import embed as _embed

    return _embed(bundle, data, out, **kwargs)


def export(bundle: str | Path, format: str = "onnx", **kwargs: Any):
    """:func:`ssltk.exporter.export`: ONNX or TorchScript; returns :class:`ssltk.exporter.ExportResult`."""
    from ssltk.exporter import export as _export

    return _export(bundle, format=format, **kwargs)
