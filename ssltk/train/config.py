"""The pretraining config: typed, validated, loadable from YAML, overridable from the command line.

Precedence: defaults < ``--config FILE.yaml`` < command-line options. The fully
resolved config is what ``--dry-run`` prints and what the bundle stores.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ssltk.data.stream.augment import AugmentConfig
from ssltk.errors import UnknownNameError, UsageError
from ssltk.options import coerce

# The default recipe (chosen by the probe experiment, docs/recipe.md).
DEFAULT_OBJECTIVES: tuple[tuple[str, float], ...] = (("layout-prediction", 1.0),)


@dataclass
class ObjectiveSpec:
    """One selected objective: its name, weight in the sum, and its options."""

    name: str
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Everything a pretraining run needs; every field can come from YAML or the CLI."""

    objectives: list[ObjectiveSpec] = field(
        default_factory=lambda: [ObjectiveSpec(n, w) for n, w in DEFAULT_OBJECTIVES]
    )
    backbone: str = "resnet18"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # local weights file or ssltk bundle to start from
    data: str | None = None  # shards (folder, glob, brace pattern); None = built-in synthetic episodes
    out: str = "runs/pretrain"
    anchor_camera: str | None = None  # default: "front" if the data has it, else its first camera
    image_size: int = 96
    batch_size: int = 64
    steps: int = 300
    lr: float | Literal["auto"] = "auto"  # auto: the objectives' own (Objective.lr), else 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 30
    min_lr: float = 1e-5
    grad_clip: float = 1.0
    accum_steps: int = 1
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    compile: bool = False
    device: str = "auto"
    decode: Literal["auto", "cpu", "gpu"] = "auto"  # JPEG decode: in the loader workers (cpu) or batched on the GPU
    seed: int = 0
    num_workers: int = 1
    threads: int = 0  # CPU compute threads; 0 = auto (every core this process may use)
    samples_per_segment: int = 4
    shuffle_buffer: int = 256
    # None = auto: on when an objective needs an augmented copy of the anchor (per-frame), off
    # otherwise; at the demo budget augmentation cost temporal-infonce its retrieval gains
    # (docs/recipe.md). Any `augment:` setting turns this into an explicit config.
    augment: AugmentConfig | None = None
    log_every: int = 10
    checkpoint_every: int = 100
    # Experiment trackers (ssltk.train.trackers): {name: settings}; a list of names is accepted.
    loggers: dict[str, dict[str, Any]] = field(default_factory=dict)
    tensorboard: bool = False  # the same as loggers: [tensorboard] (kept for older configs)
    strict_data: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, not tuples) for YAML and JSON."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def parse_objective_arg(text: str) -> tuple[str, float]:
    """``NAME`` or ``NAME=WEIGHT`` -> ``(name, weight)``."""
    name, sep, weight = text.partition("=")
    name = name.strip()
    if not name:
        raise UsageError(f"--objective {text!r}: write NAME or NAME=WEIGHT")
    if not sep:
        return name, 1.0
    try:
        w = float(weight)
    except ValueError:
        raise UsageError(f"--objective {text!r}: the weight after '=' must be a number") from None
    if w <= 0:
        raise UsageError(f"--objective {text!r}: the weight must be positive")
    return name, w


def _objectives_from_yaml(value: Any) -> list[ObjectiveSpec]:
    """Accept a list of names / ``{name, weight, ...}`` dicts, or a mapping name -> {weight, options...}."""
    specs: list[ObjectiveSpec] = []
    items: list[tuple[str, Any]]
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = []
        for v in value:
            if isinstance(v, str):
                n, w = parse_objective_arg(v)
                items.append((n, {"weight": w}))
            elif isinstance(v, dict) and "name" in v:
                items.append((v["name"], {k: x for k, x in v.items() if k != "name"}))
            else:
                raise UsageError(f"objectives: each entry must be a name or a mapping with 'name', got {v!r}")
    else:
        raise UsageError("objectives: expected a list or a mapping of objective names")
    for name, body in items:
        if body is not None and not isinstance(body, dict):
            raise UsageError(f"objectives.{name}: expected a mapping of weight and options, got {body!r}"[:300])
        body = dict(body or {})
        weight = coerce(float, body.pop("weight", 1.0), f"objectives.{name}.weight")
        if weight <= 0:
            raise UsageError(f"objectives.{name}.weight must be positive")
        options = body.pop("options", {}) or {}
        if not isinstance(options, dict):
            raise UsageError(f"objectives.{name}.options: expected a mapping, got {options!r}"[:300])
        options = dict(options)
        options.update(body)
        specs.append(ObjectiveSpec(str(name), weight, options))
    if not specs:
        raise UsageError("objectives: select at least one objective")
    return specs


# Config keys other tools use -> ssltk's key (suggested, never silently accepted).
KEY_ALIASES = {
    "learning_rate": "lr", "base_lr": "lr", "max_lr": "lr", "lr_min": "min_lr", "final_lr": "min_lr",
    "epochs": "steps", "max_steps": "steps", "iterations": "steps", "total_steps": "steps",
    "batch": "batch_size", "bs": "batch_size", "img_size": "image_size", "resolution": "image_size",
    "size": "image_size", "input_size": "image_size", "wd": "weight_decay", "warmup": "warmup_steps",
    "warmup_iters": "warmup_steps", "clip_grad": "grad_clip", "max_grad_norm": "grad_clip",
    "grad_accum": "accum_steps", "gradient_accumulation_steps": "accum_steps", "workers": "num_workers",
    "model": "backbone", "arch": "backbone", "architecture": "backbone", "model_kwargs": "backbone_kwargs",
    "objective": "objectives", "loss": "objectives", "losses": "objectives", "dataset": "data",
    "shards": "data", "train_data": "data", "output": "out", "output_dir": "out", "out_dir": "out",
    "pretrained": "init", "weights": "init", "checkpoint": "init", "strict": "strict_data", "amp": "precision",
    "dtype": "precision", "camera": "anchor_camera", "anchor": "anchor_camera", "save_every": "checkpoint_every",
    "ckpt_every": "checkpoint_every", "eval_every": "log_every", "augmentation": "augment", "aug": "augment",
    "logger": "loggers", "trackers": "loggers", "report_to": "loggers", "callbacks": "loggers",
}  # fmt: skip


def _coerced(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` checked against the fields of dataclass ``cls`` and coerced to their types."""
    hints = typing.get_type_hints(cls)
    names = _field_names(cls)
    out = {}
    for key, value in values.items():
        k = str(key).replace("-", "_")
        if k not in names:
            raise UnknownNameError(f"config key{' in ' + where if where else ''}", key, names, aliases=KEY_ALIASES)
        out[k] = value if k in ("objectives", "augment", "backbone_kwargs", "loggers") else coerce(
            hints[k], value, f"{where + '.' if where else ''}{k}"
        )
    return out


def _apply(cfg: "TrainConfig", values: dict[str, Any]) -> None:
    for k, value in _coerced(TrainConfig, values, "").items():
        if k == "objectives":
            cfg.objectives = _objectives_from_yaml(value)
        elif k == "augment" and value in (None, "auto"):
            cfg.augment = None
        elif k == "augment":
            if not isinstance(value, dict):
                raise UsageError("augment must be a mapping of augmentation settings")
            cfg.augment = _replace_augment(cfg.augment or AugmentConfig(), value)
        elif k == "loggers":
            from ssltk.train.trackers import normalize_loggers

            cfg.loggers = normalize_loggers(value)
        elif k == "backbone_kwargs":
            if not isinstance(value, dict):
                raise UsageError("backbone_kwargs must be a mapping")
            cfg.backbone_kwargs = dict(value)
        else:
            setattr(cfg, k, value)


def _replace_augment(aug: AugmentConfig, values: dict[str, Any]) -> AugmentConfig:
    vals = _coerced(AugmentConfig, values, "augment")
    return dataclasses.replace(aug, **{k: tuple(v) if isinstance(v, list) else v for k, v in vals.items()})


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None, *, check: bool = True
) -> TrainConfig:
    """Defaults, then the YAML file, then ``overrides`` (None values are ignored)."""
    cfg = TrainConfig()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"--config {p}: no such file")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark else ""
            raise UsageError(f"--config {p}: not valid YAML{where}") from None
        if not isinstance(data, dict):
            raise UsageError(f"--config {p}: the top level must be a mapping of config keys")
        _apply(cfg, data)
    _apply(cfg, {k: v for k, v in (overrides or {}).items() if v is not None})
    if check:  # callers that apply more overrides validate once at the end
        validate(cfg)
    return cfg


def apply_objective_overrides(cfg: TrainConfig, pairs: list[str]) -> None:
    """``--set OBJECTIVE.KEY=VALUE`` and ``--set KEY=VALUE`` (top-level) overrides."""
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--set {pair!r}: write KEY=VALUE or OBJECTIVE.KEY=VALUE")
        head, dot, rest = key.partition(".")
        spec = next((s for s in cfg.objectives if s.name == head), None)
        if dot and spec is not None:
            spec.options[rest] = yaml.safe_load(value) if value else value
        elif dot and head == "augment":
            cfg.augment = _replace_augment(cfg.augment or AugmentConfig(), {rest: yaml.safe_load(value)})
        elif dot:
            raise UnknownNameError("objective in --set", head, [s.name for s in cfg.objectives] + ["augment"])
        else:
            _apply(cfg, {key: yaml.safe_load(value)})


def resolve_config(
    config: str | Path | None,
    objectives: list[str] | None = None,
    sets: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Defaults < YAML file < ``overrides`` < ``objectives`` (``NAME[=WEIGHT]``, keeping the file's
    options of NAME) < ``sets`` (``KEY=VALUE`` / ``OBJECTIVE.OPTION=VALUE``); then :func:`validate`."""
    cfg = load_config(config, overrides, check=False)
    if objectives:
        keep = {s.name: s for s in cfg.objectives}
        specs = []
        for text in objectives:
            name, weight = parse_objective_arg(text)
            base = keep.get(name)
            specs.append(ObjectiveSpec(name, weight, dict(base.options) if base else {}))
        cfg.objectives = specs
    apply_objective_overrides(cfg, sets or [])
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Range checks that need no plugins or data."""
    checks = [
        (cfg.steps >= 1, "steps must be >= 1"),
        (cfg.steps <= 10**9, f"steps {cfg.steps} is more than 10^9; pass a number of optimizer steps"),
        (cfg.batch_size >= 2, f"batch_size {cfg.batch_size} is too small: contrastive objectives need negatives (use >= 8)"),
        (cfg.image_size >= 16, "image_size must be >= 16"),
        (cfg.image_size <= 4096, f"image_size {cfg.image_size} is too large (at most 4096)"),
        (cfg.num_workers <= 256, f"num_workers {cfg.num_workers} is too many (at most 256)"),
        (cfg.lr == "auto" or cfg.lr > 0, "lr must be positive (or auto)"),
        (0 <= cfg.seed < 2**63, f"seed {cfg.seed} is out of range: use 0 <= seed < 2^63"),
        (cfg.init is None or bool(str(cfg.init).strip()), "init is empty: give a weights file or bundle, or omit it"),
        (cfg.accum_steps >= 1, "accum_steps must be >= 1"),
        (cfg.warmup_steps >= 0, "warmup_steps must be >= 0"),
        (cfg.num_workers >= 0, "num_workers must be >= 0"),
        (cfg.threads >= 0, "threads must be >= 0 (0 = auto)"),
        (cfg.samples_per_segment >= 1, "samples_per_segment must be >= 1"),
        (cfg.batch_size % cfg.samples_per_segment == 0,
         f"batch_size {cfg.batch_size} must be a multiple of samples_per_segment {cfg.samples_per_segment}"),
        (cfg.log_every >= 1 and cfg.checkpoint_every >= 1, "log_every and checkpoint_every must be >= 1"),
        (len({s.name for s in cfg.objectives}) == len(cfg.objectives), "an objective is selected twice"),
        (bool(cfg.objectives), "select at least one objective"),
    ]
    for ok, msg in checks:
        if not ok:
            raise UsageError(msg)
