"""`--logger tensorboard|mlflow|wandb`: each tracker's own files read back with its own reader, runs continued on resume."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ssltk.cli import build_app
from ssltk.errors import UnknownNameError, UsageError
from ssltk.plugins import get_plugin_manager
from ssltk.registry import Registry
from ssltk.testing.shards import write_tiny_shards
from ssltk.train.config import load_config
from ssltk.train.loop import pretrain
from ssltk.train.trackers import check_installed, default_mlflow_uri, normalize_loggers

runner = CliRunner()
TINY = dict(backbone="test_resnet", image_size=32, batch_size=8, num_workers=0, log_every=1, checkpoint_every=2,
            warmup_steps=1, threads=1, objectives={"temporal-infonce": {"dt": "1-4"}})


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("shards")
    write_tiny_shards(d, episodes=4, length=20, cameras=("front",), image_size=32, segment_length=10, overlap=4)
    return d


@pytest.fixture(scope="module")
def app():
    return build_app(get_plugin_manager(load=["ssltk"]))


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def metrics_rows(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]


def wandb_records(path: Path) -> list:
    """The protobuf records of a W&B ``.wandb`` file: a 7-byte ``:W&B`` header, then LevelDB-log
    framing (32 KiB blocks; per chunk crc32, little-endian length, kind 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    buf = path.read_bytes()
    assert buf[:4] == b":W&B", path
    pos, block, part, records = 7, 32768, b"", []
    while pos + 7 <= len(buf):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, n, kind = struct.unpack("<IHB", buf[pos:pos + 7])
        pos += 7
        if kind == 0 and n == 0:
            break
        part += buf[pos:pos + n]
        pos += n
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(part)
            records.append(rec)
            part = b""
    return records


@pytest.fixture(scope="module")
def resumed_run(shards, tmp_path_factory) -> Path:
    """A run with all three trackers interrupted after step 3 (checkpoint at 2), then started again: it resumes."""
    for module in ("tensorboard", "mlflow", "wandb"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install 'ssltk[{module}]')")
    out = tmp_path_factory.mktemp("tracked") / "run"
    cfg = dict(TINY, data=str(shards), out=str(out), steps=4, loggers=["tensorboard", "mlflow", "wandb"])
    registry = Registry(get_plugin_manager(load=["ssltk"]))

    def stop_after_3(step, total, row):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(load_config(None, cfg), registry=registry, progress=stop_after_3)
    assert not (out / "ssltk.json").exists()
    first_ids = json.loads((out / "trackers.json").read_text())
    result = pretrain(load_config(None, cfg), registry=registry)  # same config into the same folder: resumes
    assert result.steps == 4 and (out / "ssltk.json").is_file()
    assert json.loads((out / "trackers.json").read_text()) == first_ids  # the same tracker runs continued
    return out


@pytest.mark.slow
def test_mlflow_run_reads_back_with_mlflows_client(resumed_run):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=default_mlflow_uri(resumed_run))
    experiment = client.get_experiment_by_name("ssltk")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # the resumed run logged into the interrupted one
    run = runs[0]
    assert run.info.run_id == json.loads((resumed_run / "trackers.json").read_text())["mlflow"]
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["backbone"] == "test_resnet" and run.data.params["steps"] == "4"
    assert run.data.params["objectives.temporal-infonce.options.dt"] == "1-4"
    assert run.data.params["objectives.temporal-infonce.weight"] == "1.0"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert {m.step for m in history} == {1, 2, 3, 4}
    want = {r["step"]: r["loss"] for r in metrics_rows(resumed_run)}
    last = {m.step: m.value for m in sorted(history, key=lambda m: m.timestamp)}  # the resumed values win
    assert last == pytest.approx(want)
    assert {"lr", "samples_per_s", "data_wait", "eta_s", "loss/temporal-infonce"} <= set(run.data.metrics)


@pytest.mark.slow
def test_wandb_offline_run_files_hold_the_metrics(resumed_run):
    run_id = json.loads((resumed_run / "trackers.json").read_text())["wandb"]
    folders = sorted((resumed_run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(folders) == 2  # the interrupted part and the resumed part, one id
    steps: dict[int, dict[str, float]] = {}
    for folder in folders:
        (file,) = folder.glob("run-*.wandb")
        records = wandb_records(file)
        runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        assert runs and runs[0].run_id == run_id and runs[0].project == "ssltk"
        for rec in records:
            if rec.WhichOneof("record_type") == "history":
                items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
                steps[int(items["_step"])] = items
    assert set(steps) == {1, 2, 3, 4}
    for row in metrics_rows(resumed_run):
        assert steps[row["step"]]["loss"] == pytest.approx(row["loss"])
        assert steps[row["step"]]["data_wait"] == pytest.approx(row["data_wait"])


@pytest.mark.slow
def test_tensorboard_events_read_back(resumed_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(resumed_run / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"loss", "lr", "data_wait", "eta_s", "loss/temporal-infonce"} <= set(tags)
    logged: dict[int, float] = {}
    for event in acc.Scalars("loss"):
        logged[event.step] = event.value  # files in order: the resumed step 3 replaces the interrupted one
    want = {r["step"]: r["loss"] for r in metrics_rows(resumed_run)}
    assert logged == pytest.approx(want, rel=1e-6)


def test_normalize_loggers_forms_and_errors():
    assert normalize_loggers(None) == {}
    assert normalize_loggers("tensorboard, MLflow") == {"tensorboard": {}, "mlflow": {}}
    assert normalize_loggers({"wandb": {"project": "p"}}) == {"wandb": {"project": "p"}}
    with pytest.raises(UnknownNameError, match="did you mean 'wandb'"):
        normalize_loggers(["wandbb"])
    with pytest.raises(UnknownNameError, match="did you mean 'tensorboard'"):  # an alias is suggested, not taken
        normalize_loggers(["tb"])
    with pytest.raises(UsageError, match="unknown setting 'host'"):
        normalize_loggers({"mlflow": {"host": "x"}})
    with pytest.raises(UsageError, match="expected a mapping"):
        normalize_loggers({"mlflow": 3})
    with pytest.raises(UsageError, match="expected a list"):
        normalize_loggers(3)


def test_missing_extra_names_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    check_installed({"tensorboard": {}})
    with pytest.raises(UsageError, match=r"pip install 'ssltk\[wandb\]'"):
        check_installed({"wandb": {}})


def test_cli_missing_extra_is_one_line_with_brackets_and_writes_nothing(app, shards, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    out = tmp_path / "run"
    args = ["pretrain", "--data", str(shards), "--out", str(out), "--steps", "2", "--backbone", "test_resnet",
            "--image-size", "32", "--num-workers", "0", "--logger", "mlflow"]
    line = one_line_error(runner.invoke(app, args))
    assert "pip install 'ssltk[mlflow]'" in line  # markup-safe: the brackets survive
    assert not out.exists()


@pytest.mark.parametrize("args, expect", [
    (["--logger", "tensorbord"], "tensorboard"),
    (["--logger", "mlflow,nope"], "nope"),
    (["--set", "loggers=3"], "loggers"),
])  # fmt: skip
def test_cli_bad_logger_is_one_line(app, tmp_path, args, expect):
    line = one_line_error(runner.invoke(app, ["pretrain", "--out", str(tmp_path / "r"), *args]))
    assert expect in line
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow not installed: pip install 'ssltk[mlflow]'")
def test_mlflow_takes_any_tracking_uri_and_continues_a_run(tmp_path, monkeypatch):
    import mlflow

    from ssltk.train.trackers import close_trackers, open_trackers

    uri = "sqlite:///" + (tmp_path / "elsewhere.db").as_posix()
    out = tmp_path / "run"
    out.mkdir()
    settings = {"mlflow": {"tracking_uri": uri, "experiment": "exp", "run_name": "r1", "tags": {"team": "a"}}}
    (tracker,) = open_trackers(settings, out, {"lr": 0.1, "objectives": [{"name": "x", "weight": 1.0}]}, resume=False)
    tracker.log({"step": 1, "loss": 2.0, "lr": 0.1, "bad": float("nan"), "flag": True})
    close_trackers([tracker], ok=False)
    assert not (out / "mlflow.db").exists()  # the given URI, not the default store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # resumed with the URI from the environment
    (tracker,) = open_trackers({"mlflow": {}}, out, {}, resume=True)
    tracker.log({"step": 2, "loss": 1.5, "lr": 0.05})
    close_trackers([tracker], ok=True)
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert run.info.run_name == "r1" and run.info.status == "FINISHED" and run.data.tags["team"] == "a"
    assert run.data.params == {"lr": "0.1", "objectives.x.weight": "1.0"}
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")] == [(1, 2.0), (2, 1.5)]
    assert "bad" not in run.data.metrics and "flag" not in run.data.metrics  # only finite numbers are logged
