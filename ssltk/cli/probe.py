"""``ssltk probe BUNDLE``: did the bundle learn something useful for driving?

A thin wrapper over :func:`ssltk.probe.run_probe` (see ``docs/probe.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Sequence

import typer
from rich.markup import escape

from ssltk.cli._util import AppState, console, friendly, print_json
from ssltk.errors import UsageError

MAX_FRAMES = 2304  # = ssltk.probe.run.MAX_FRAMES (not imported: --help must not import torch)
INPUT_CHOICES = {"t,t-1": ("t,t-1",), "t": ("t",), "both": ("t", "t,t-1")}


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1"`` → ``(0, 1)``; UsageError for anything that is not a comma list of distinct integers."""
    try:
        seeds = tuple(int(p) for p in text.replace(" ", "").split(",") if p != "")
    except ValueError:
        raise UsageError(f"--seeds {text!r}: give a comma-separated list of integers, e.g. 0,1") from None
    if not seeds:
        raise UsageError("--seeds: give at least one seed, e.g. 0,1")
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {text!r}: seeds must be distinct")
    return seeds


def default_out(bundle: str | Path | None) -> Path:
    """Where results go without ``--out``: a ``<bundle>-probe`` folder next to the bundle (``probe-baselines`` without one)."""
    if bundle is None:
        return Path("probe-baselines")
    b = Path(bundle).expanduser()
    return b.parent / f"{b.resolve().name}-probe"


def run_and_show_probe(
    bundle: str | Path | None,
    *,
    data: Any = None,
    compare: Sequence[str] = (),
    seeds: Sequence[int] = (0, 1),
    out: str | Path | None = None,
    write_bundle: bool = False,
    as_json: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Run the probe, write ``probe.json`` + ``probe.png`` to ``out``, and print the table (or JSON)."""
    from ssltk.probe import run_probe
    from ssltk.probe.report import footnotes, render_table

    out = Path(out) if out is not None else default_out(bundle)
    kwargs = dict(compare=compare, seeds=seeds, out=out, write_into_bundle=write_bundle, **options)
    if as_json:
        result = run_probe(bundle, data, **kwargs)
    else:
        what = f"{Path(bundle).name}, random inits" if bundle is not None else "the data baselines"
        with console.status(f"[bold]ssltk probe[/]: encoding frames with {escape(what)} and raw pixels ..."):
            result = run_probe(bundle, data, **kwargs)
    if as_json:
        print_json(result)
        return result
    console.print(render_table(result, console.width))
    for line in footnotes(result):
        console.print(f"[dim]{escape(line)}[/]", soft_wrap=True)
    written = result.get("written", {})
    console.print(f"Results: {written.get('json')}  chart: {written.get('chart')}"
                  + (f"  bundle: {written['bundle']}" if "bundle" in written else ""), markup=False)
    console.print(f"[dim]{result['timing_s']['total']:.1f} s ({result['timing_s']['frames_encoded_per_model']} frames per model)[/]")
    return result


def register(app: typer.Typer, state: AppState) -> None:
    """Add ``ssltk probe`` to ``app``."""

    @app.command("probe")
    @friendly
    def probe_cmd(
        bundle: Optional[str] = typer.Argument(None, help="Bundle folder (from `ssltk pretrain`). Without it: the data baselines only (is motion visible in these frames?)."),
        data: Optional[str] = typer.Option(None, "--data", help="Probe shards (folder, glob or brace pattern). Default: the built-in synthetic probe split."),
        compare: Optional[List[str]] = typer.Option(None, "--compare", help="Another bundle to probe alongside (repeat for more)."),
        seeds: str = typer.Option("0,1", "--seeds", help="Seeds for the episode split and the random init, e.g. 0,1,2."),
        out: Optional[str] = typer.Option(None, "--out", help="Folder for probe.json and probe.png. Default: <BUNDLE>-probe next to the bundle."),
        as_json: bool = typer.Option(False, "--json", help="Print all numbers as JSON instead of the table."),
        write_bundle: bool = typer.Option(False, "--write-bundle", help="Also write probe.json into the bundle folder."),
        max_frames: int = typer.Option(MAX_FRAMES, "--max-frames", help="Cap on anchor-camera frames encoded per model (in runs of --run-length, spread over the episodes)."),
        run_length: int = typer.Option(12, "--run-length", help="Consecutive frames per run (at least the largest retrieval Δt + 1)."),
        readout: str = typer.Option("gap", "--readout", help="Model features: gap (the pooled output) or grid (the last feature map pooled to 2x2 cells)."),
        camera: Optional[str] = typer.Option(None, "--camera", help="Anchor camera (default: front, else the first)."),
        inputs: str = typer.Option("t,t-1", "--inputs", help="Regression input: t,t-1 (frame and its predecessor), t, or both."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    ) -> None:
        """Probe a bundle's frozen features: ego motion, lanes and retrieval, against random init, raw pixels and ego status."""
        if inputs not in INPUT_CHOICES:
            from ssltk.errors import UnknownNameError

            raise UnknownNameError("--inputs value", inputs, INPUT_CHOICES)
        compares = [c for item in (compare or []) for c in item.split(",") if c]
        run_and_show_probe(
            bundle, data=data, compare=compares, seeds=parse_seeds(seeds), out=out, write_bundle=write_bundle,
            as_json=as_json, max_frames=max_frames, camera=camera, inputs=INPUT_CHOICES[inputs], device=device,
            readout=readout, run_length=run_length,
        )
