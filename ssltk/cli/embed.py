"""``ssltk embed`` and ``ssltk export``: thin wrappers over :func:`ssltk.embedding.embed` and :func:`ssltk.exporter.export`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ssltk.cli._util import AppState, console, friendly, print_json, print_key_values


def run_embed(bundle: str, *, data, out: str, pool: str, cameras, batch_size: int, device: str, overwrite: bool,
              as_json: bool = False):
    """Embed with progress: a live count on a terminal, a log line every 20 batches otherwise."""
    import logging

    from ssltk.cli.progress import log_lines_to_stderr
    from ssltk.embedding import embed, logger

    if console.is_terminal and not as_json:
        with console.status("[bold]ssltk embed[/]: encoding frames ...") as status:
            return embed(bundle, data, out, pool=pool, cameras=cameras, batch_size=batch_size, device=device,
                         overwrite=overwrite, progress=lambda n: status.update(f"[bold]ssltk embed[/]: {n} frames encoded"))
    calls = [0]

    def every(n: int) -> None:
        calls[0] += 1
        if calls[0] % 20 == 0:
            logger.info("embed: %d frames encoded", n)

    with log_lines_to_stderr(logging.getLogger("ssltk.embed")):
        return embed(bundle, data, out, pool=pool, cameras=cameras, batch_size=batch_size, device=device,
                     overwrite=overwrite, progress=every)


def register(app: typer.Typer, state: AppState) -> None:
    @app.command("embed")
    @friendly
    def embed_cmd(
        bundle: str = typer.Argument(..., help="Bundle folder (from `ssltk pretrain`)."),
        data: Optional[str] = typer.Option(None, "--data", help="Shards: folder, glob or brace pattern. Default: the built-in synthetic probe split."),
        out: str = typer.Option(..., "--out", help="Output file: FILE.parquet (one table) or FILE.npy (array + FILE.index.csv + FILE.json)."),
        pool: str = typer.Option("gap", "--pool", help="Readout, as in the probe: gap (the pooled output) or grid (last feature map pooled to 2x2 cells)."),
        camera: Optional[List[str]] = typer.Option(None, "--camera", help="Only this camera (repeatable). Default: every camera."),
        batch_size: int = typer.Option(64, "--batch-size", help="Frames encoded per batch (bounds memory)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Write frozen features of every (episode, timestep, camera) with their keys and ego fields."""
        result = run_embed(bundle, data=data, out=out, pool=pool, cameras=camera, batch_size=batch_size, device=device,
                           overwrite=overwrite, as_json=as_json)
        if as_json:
            print_json(result.as_dict())
            return
        print_key_values("embeddings written", [
            ("file", str(result.out)), ("rows", str(result.rows)), ("dim", str(result.dim)),
            ("pool", result.pool), ("cameras", ", ".join(result.cameras)),
            ("ego fields", ", ".join(result.ego_fields) or "none"),
            ("files", ", ".join(Path(f).name for f in result.files)),
        ])  # fmt: skip

    @app.command("export")
    @friendly
    def export_cmd(
        bundle: str = typer.Argument(..., help="Bundle folder (from `ssltk pretrain`)."),
        format: str = typer.Option("onnx", "--format", help="onnx or torchscript."),
        out: Optional[str] = typer.Option(None, "--out", help="Output file. Default: BUNDLE/model.onnx or BUNDLE/model.torchscript.pt."),
        opset: int = typer.Option(18, "--opset", help="ONNX opset version."),
        check: bool = typer.Option(True, "--check/--no-check", help="Compare the export with the torch model on a random batch (onnxruntime for ONNX)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing export."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Export a bundle's backbone (pooled features, dynamic batch axis) to ONNX or TorchScript."""
        from ssltk.exporter import export

        result = export(bundle, format=format, out=out, opset=opset, check=check, overwrite=overwrite)
        if as_json:
            print_json(result.as_dict())
            return
        rows = [("file", str(result.out)), ("format", result.format), ("input", f"{result.input_name} [N, {', '.join(map(str, result.input_size))}] float32"),
                ("output", f"{result.output_name} [N, {result.num_features}]"), ("preprocessing", str(result.preprocess_file))]
        if result.max_abs_diff is not None:
            rows.append(("max |export - torch|", f"{result.max_abs_diff:.2e}"))
        print_key_values("exported", rows)
