"""Pretrain from Python with an MLflow log, then read the run back with MLflow's own client.

    python examples/pretrain_api.py SHARDS/ OUT/ [STEPS]
"""

import logging
import sys

import ssltk


def main(shards: str, out: str, steps: int = 300, **config):
    logging.basicConfig(level=logging.INFO)  # the "step 10/300 loss ..." lines of the ssltk.train logger
    config = {"backbone": "resnet18", "image_size": 64, "batch_size": 32, **config}
    result = ssltk.pretrain(
        objectives=["temporal-infonce", "per-frame=0.5"], data=shards, out=out, steps=steps,
        loggers=["mlflow"], progress=False, **config,
    )  # an interrupted run in OUT is resumed by the same call; another config there is refused
    print(f"bundle {result.out}: loss {result.final['loss']:.4f} after {result.steps} steps")

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{result.out.resolve()}/mlflow.db")  # the default store
    run = client.search_runs([client.get_experiment_by_name("ssltk").experiment_id])[0]
    losses = client.get_metric_history(run.info.run_id, "loss")
    print(f"mlflow run {run.info.run_name} ({run.info.status}): {len(losses)} loss values, "
          f"backbone {run.data.params['backbone']}")
    return result


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 300)
