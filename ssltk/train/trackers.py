"""Experiment trackers: TensorBoard, MLflow and Weights & Biases, each an optional extra.

``--logger NAME`` (repeatable) or the config key ``loggers`` selects them; every metrics row
that goes to ``metrics.jsonl`` also goes to each tracker. Settings per tracker (config file)::

    loggers:
      tensorboard: {}                          # OUT/tensorboard
      mlflow: {tracking_uri: http://host:5000, experiment: ssltk, run_name: my-run}
      wandb: {project: ssltk, mode: online}    # default mode: offline, unless WANDB_MODE is set

MLflow writes to a local store in the run folder, ``sqlite:///OUT/mlflow.db``
(``mlflow ui --backend-store-uri sqlite:///OUT/mlflow.db`` shows it), unless a ``tracking_uri``
is given (or ``MLFLOW_TRACKING_URI`` is set): any URI MLflow takes, a server included. W&B runs offline into ``OUT/wandb`` unless ``mode`` or
``WANDB_MODE`` says otherwise (``wandb sync OUT/wandb/offline-run-*`` uploads it later).
The ids of the tracker runs are kept in ``OUT/trackers.json``, so ``--resume`` continues the
same MLflow and W&B runs.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path
from typing import Any

from ssltk.errors import UnknownNameError, UsageError

IDS_FILE = "trackers.json"
MLFLOW_DB = "mlflow.db"
# name -> (module that must import, extra that installs it, options it accepts)
TRACKERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "tensorboard": ("tensorboard", "tensorboard", ()),
    "mlflow": ("mlflow", "mlflow", ("tracking_uri", "experiment", "run_name", "tags")),
    "wandb": ("wandb", "wandb", ("project", "entity", "mode", "name", "tags", "group")),
}
LOGGER_ALIASES = {"tb": "tensorboard", "wb": "wandb", "weights-and-biases": "wandb", "ml-flow": "mlflow"}


def normalize_loggers(value: Any, where: str = "loggers") -> dict[str, dict[str, Any]]:
    """A list of names, a mapping name -> settings, a comma list or None -> ``{name: settings}``."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = []
        for v in value:
            if not isinstance(v, str):
                raise UsageError(f"{where}: each entry must be a tracker name, got {v!r}"[:300])
            items.append((v, {}))
    else:
        raise UsageError(f"{where}: expected a list of tracker names ({', '.join(TRACKERS)}) or a mapping")
    out: dict[str, dict[str, Any]] = {}
    for name, settings in items:
        name = str(name).strip().lower()
        if name not in TRACKERS:
            raise UnknownNameError(f"logger in {where}", name, TRACKERS, aliases=LOGGER_ALIASES)
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            raise UsageError(f"{where}.{name}: expected a mapping of settings, got {settings!r}"[:300])
        allowed = TRACKERS[name][2]
        for key in settings:
            if key not in allowed:
                known = ", ".join(allowed) or "none"
                raise UsageError(f"{where}.{name}: unknown setting {key!r} (known: {known})")
        out[name] = {**out.get(name, {}), **settings}
    return out


def selected_loggers(cfg: Any) -> dict[str, dict[str, Any]]:
    """The trackers of a :class:`~ssltk.train.config.TrainConfig` (``tensorboard: true`` included)."""
    loggers = dict(cfg.loggers)
    if cfg.tensorboard and "tensorboard" not in loggers:
        loggers["tensorboard"] = {}
    return loggers


def check_installed(loggers: dict[str, dict[str, Any]]) -> None:
    """One line naming the extra for the first selected tracker whose library is missing."""
    for name in loggers:
        module, extra, _ = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise UsageError(f"--logger {name} needs the {module} package: pip install 'ssltk[{extra}]'")


def _finite_scalars(row: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v) for k, v in row.items()
        if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }  # fmt: skip


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        for v in value:  # objectives: keyed by name
            _flat(f"{prefix}.{v['name']}", {k: x for k, x in v.items() if k != "name"}, out)
    else:
        out[prefix] = value
    return out


class Tracker:
    """One tracker run: ``log(row)`` per metrics row, ``close(ok)`` at the end."""

    name = ""

    def log(self, row: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self, ok: bool = True) -> None:
        raise NotImplementedError

    def run_id(self) -> str | None:
        return None


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    def __init__(self, out: Path, settings: dict[str, Any], config: dict[str, Any], resume_id: str | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))

    def log(self, row: dict[str, Any]) -> None:
        for key, value in _finite_scalars(row).items():
            self.writer.add_scalar(key, value, row["step"])

    def close(self, ok: bool = True) -> None:
        self.writer.close()


def default_mlflow_uri(out: Path) -> str:
    """A local SQLite store in the run folder (MLflow 3 no longer takes new runs in a plain ``mlruns/`` file store)."""
    return "sqlite:///" + (Path(out).resolve() / MLFLOW_DB).as_posix()  # four slashes: an absolute path


class MLflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, out: Path, settings: dict[str, Any], config: dict[str, Any], resume_id: str | None) -> None:
        import mlflow

        uri = settings.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or default_mlflow_uri(out)
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        self.uri = uri
        if resume_id is not None:
            self.id = resume_id
            self.client.update_run(resume_id, status="RUNNING")
            return
        experiment = str(settings.get("experiment") or "ssltk")
        found = self.client.get_experiment_by_name(experiment)
        exp_id = found.experiment_id if found is not None else self.client.create_experiment(experiment)
        tags = {"mlflow.source.name": "ssltk pretrain", "ssltk.out": str(out.resolve()), **(settings.get("tags") or {})}
        run = self.client.create_run(exp_id, run_name=settings.get("run_name") or out.name, tags=tags)
        self.id = run.info.run_id
        params = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in _flat("", config, {}).items()}
        from mlflow.entities import Param

        items = [Param(k[:250], v[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.id, params=items[i:i + 100])

    def log(self, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        import time

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, int(row["step"])) for k, v in _finite_scalars(row).items()]
        self.client.log_batch(self.id, metrics=metrics)

    def close(self, ok: bool = True) -> None:
        self.client.set_terminated(self.id, status="FINISHED" if ok else "FAILED")

    def run_id(self) -> str | None:
        return self.id


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, out: Path, settings: dict[str, Any], config: dict[str, Any], resume_id: str | None) -> None:
        import wandb

        mode = settings.get("mode") or os.environ.get("WANDB_MODE") or "offline"
        (out / "wandb").parent.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=settings.get("project") or "ssltk", entity=settings.get("entity"), name=settings.get("name") or out.name,
            tags=settings.get("tags"), group=settings.get("group"), config=config, dir=str(out), mode=mode,
            id=resume_id, resume="allow" if resume_id else None, settings=wandb.Settings(silent=True, console="off"),
        )  # fmt: skip

    def log(self, row: dict[str, Any]) -> None:
        self.run.log(_finite_scalars(row), step=int(row["step"]))

    def close(self, ok: bool = True) -> None:
        self.run.finish(exit_code=0 if ok else 1)

    def run_id(self) -> str | None:
        return self.run.id


_CLASSES: dict[str, type[Tracker]] = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "wandb": WandbTracker}


def open_trackers(
    loggers: dict[str, dict[str, Any]], out: Path, config: dict[str, Any], *, resume: bool
) -> list[Tracker]:
    """Start every selected tracker (continuing the runs in ``OUT/trackers.json`` on resume)."""
    out = Path(out)
    ids: dict[str, Any] = {}
    if resume and (out / IDS_FILE).is_file():
        try:
            ids = json.loads((out / IDS_FILE).read_text())
        except (OSError, ValueError):
            ids = {}
    trackers: list[Tracker] = []
    try:
        for name, settings in loggers.items():
            trackers.append(_CLASSES[name](out, settings, config, ids.get(name) if resume else None))
    except BaseException:
        close_trackers(trackers, ok=False)
        raise
    new_ids = {t.name: t.run_id() for t in trackers if t.run_id() is not None}
    if new_ids:
        (out / IDS_FILE).write_text(json.dumps({**ids, **new_ids}, indent=2) + "\n")
    return trackers


def close_trackers(trackers: list[Tracker], *, ok: bool) -> None:
    for t in trackers:
        try:
            t.close(ok)
        except Exception:  # noqa: BLE001 - a tracker failing at the end must not hide the run's own outcome
            pass
