"""``ssltk data``: make, pack and look at episode shards (``docs/data.md``)."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ssltk.cli._util import AppState, console, err_console, friendly, print_json, print_key_values
from ssltk.data.synth.params import SynthParams
from ssltk.errors import UsageError

DOCS = "docs/data.md"


def parse_image_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    """``"96"`` -> (96, 96); ``"160x96"`` (WIDTHxHEIGHT) -> (96, 160) as (height, width)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", text)
    if not m:
        raise UsageError(f"image size {text!r}: write 96 (square) or WIDTHxHEIGHT like 160x96")
    w = int(m.group(1))
    h = int(m.group(2)) if m.group(2) else w
    return h, w


def _split_list(text: Optional[str]) -> Optional[list[str]]:
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]


@contextlib.contextmanager
def _progress(label: str, total: int | None = None) -> Iterator:
    """A rich progress bar on stderr, shown from the first update on; yields ``update(completed, total=None)``."""
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("images"), TimeRemainingColumn())
    bar = Progress(*columns, console=err_console, transient=True)
    task = None

    def update(completed: int, new_total: int | None = None) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task(label, total=new_total if new_total is not None else total)
        bar.update(task, completed=completed, **({"total": new_total} if new_total is not None else {}))

    try:
        yield update
    finally:
        if task is not None:
            bar.stop()


def _synth_option(name: str, *decls: str):
    """A ``data synth`` option whose default and help are :class:`~ssltk.data.synth.params.SynthParams`'s."""
    default, help_text = SynthParams.option(name)
    if name == "cameras":
        default = ",".join(default)
    elif name == "image_size":
        default = str(default)
    return typer.Option(default, *decls, help=help_text)


def _synth_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for the shards."),
    episodes: int = _synth_option("episodes"),
    length: int = _synth_option("length"),
    image_size: str = _synth_option("image_size", "--image-size"),
    fps: float = _synth_option("fps"),
    cameras: str = _synth_option("cameras"),
    drop_rate: float = _synth_option("drop_rate", "--drop-rate"),
    seed: int = _synth_option("seed"),
    segment_length: int = _synth_option("segment_length", "--segment-length"),
    overlap: int = _synth_option("overlap"),
    quality: int = _synth_option("quality"),
    shard_size: int = typer.Option(32, "--shard-size", help="Segments per shard."),
    workers: int = typer.Option(1, help="Worker processes (the output does not depend on it)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace shards already in --out."),
) -> None:
    """Generate synthetic multi-camera driving episodes as episode shards."""
    from ssltk.data.synth.episodes import synth_episodes

    params = SynthParams(  # fails before the bar appears
        episodes=episodes, length=length, image_size=parse_image_size(image_size), fps=fps, cameras=cameras,
        drop_rate=drop_rate, seed=seed, segment_length=segment_length, overlap=overlap, quality=quality,
    )  # fmt: skip
    total = params.episodes * params.length * len(params.cameras)
    with _progress("synth", total) as update:
        done = [0]

        def step(n: int) -> None:
            done[0] += n
            update(done[0])

        manifest = synth_episodes(out, params, shard_size=shard_size, workers=workers, overwrite=overwrite, progress=step)
    mb = sum(s["bytes"] for s in manifest["shards"]) / 1e6
    console.print(
        f"wrote {manifest['episodes']} episodes, {manifest['segments']} segments, {manifest['frames']} images "
        f"in {len(manifest['shards'])} shards ({mb:.1f} MB) to {out}", markup=False
    )


def _pack_cmd(
    src: Path = typer.Argument(..., help="Folder of raw episodes (one folder each, with meta.jsonl and images)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for the shards."),
    segment_length: int = typer.Option(16, "--segment-length", help="Timesteps per stored segment."),
    overlap: int = typer.Option(8, help="Timesteps shared by consecutive segments."),
    image_size: Optional[str] = typer.Option(None, "--image-size", help="Resize: 96 or WIDTHxHEIGHT. Default: keep."),
    quality: int = typer.Option(90, help="JPEG quality when encoding (resized or PNG input); JPEGs are otherwise copied."),
    shard_size: int = typer.Option(64, "--shard-size", help="Segments per shard."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace shards already in --out."),
    lenient: bool = typer.Option(False, "--lenient", help="Skip and count bad input instead of stopping at the first."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Pack raw episode folders (images + meta.jsonl) into episode shards."""
    from ssltk.data.shards.pack import pack_episodes

    with _progress("pack") as update:
        summary = pack_episodes(
            src, out, segment_length=segment_length, overlap=overlap, image_size=parse_image_size(image_size),
            quality=quality, shard_size=shard_size, overwrite=overwrite, lenient=lenient, progress=update,
        )  # fmt: skip
    if as_json:
        print_json({k: v for k, v in summary.items() if k != "manifest"})
        return
    _print_pack_summary(summary)


def _print_pack_summary(s: dict) -> None:
    table = Table(title=f"packed into {s['out']}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    missing = ", ".join(f"{c} {n}" for c, n in s["missing"].items()) or "none"
    rows = [
        ("episodes", str(s["episodes"])), ("timesteps", str(s["timesteps"])),
        ("images", f"{s['images']} ({s['passed_through']} JPEGs copied, {s['reencoded']} encoded)"),
        ("missing frames", missing), ("segments", str(s["segments"])),
        ("shards", f"{s['shards']} ({s['bytes'] / 1e6:.1f} MB)"), ("time", f"{s['seconds']:.1f} s"),
    ]  # fmt: skip
    if s["ignored_files"]:
        rows.append(("ignored files", str(s["ignored_files"])))
    if s["ignored_fields"]:
        rows.append(("ignored non-numeric fields", ", ".join(s["ignored_fields"])))
    for kind, n in s["skipped"].items():
        rows.append((f"skipped: {kind}", str(n)))
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
    for msg in s["messages"]:
        err_console.print(f"[yellow]skipped:[/] {escape(msg)}", soft_wrap=True, highlight=False)


def _inspect_cmd(
    spec: str = typer.Argument(..., help="Shards: a folder, a .tar, a glob or a brace pattern."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    sheet: Optional[Path] = typer.Option(None, "--sheet", help="Also write a PNG contact sheet here."),
    sheet_episodes: int = typer.Option(3, "--sheet-episodes", help="Episodes on the contact sheet."),
    sheet_columns: int = typer.Option(8, "--sheet-columns", help="Timesteps per episode on the contact sheet."),
    sheet_stride: Optional[int] = typer.Option(None, "--sheet-stride", help="Show every N-th timestep (1 = consecutive) instead of spreading columns."),
    sheet_cameras: Optional[str] = typer.Option(None, "--sheet-cameras", help="Comma-separated cameras to show (default all)."),
) -> None:
    """Summarise a shard set: episodes, segments, cameras, missing frames, sizes, ego fields; name damaged shards (exit 1)."""
    from ssltk.data.shards.inspect import damage_lines, inspect_shards, summary_rows

    if sheet is not None and sheet.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise UsageError(f"--sheet {str(sheet)[:120]!r}: give an image file name ending in .png (or .jpg, .webp)")
    info = inspect_shards(spec)
    if not info["segments"]:  # nothing readable
        if as_json:
            print_json(info)
        _print_damage(info, damage_lines(info), readable=False)
        raise typer.Exit(1)
    if sheet is not None:
        from ssltk.data.synth.sheet import contact_sheet

        contact_sheet(spec, sheet, episodes=sheet_episodes, columns=sheet_columns, stride=sheet_stride,
                      cameras=_split_list(sheet_cameras))  # fmt: skip
        info["sheet"] = str(sheet)
    if as_json:
        print_json(info)
    else:
        print_key_values(f"shards: {spec}", summary_rows(info))
        if sheet is not None:
            console.print(f"contact sheet: {sheet}", markup=False)
    if info["damaged"]:
        _print_damage(info, damage_lines(info), readable=True)
        raise typer.Exit(1)


def _print_damage(info: dict, lines: list[str], readable: bool) -> None:
    """The damage report on stderr: a headline, then one line per damaged shard or sample."""
    n, kinds = info["damaged_shards"], ", ".join(f"{k} {v}" for k, v in info["damage_kinds"].items())
    tail = "the summary counts what is readable" if readable else "nothing in them is readable"
    err_console.print(f"[bold red]damaged:[/] {n} of {info['shards']} shard(s) ({kinds}); {tail}",
                      soft_wrap=True, highlight=False)  # fmt: skip
    for line in lines:
        err_console.print(f"  {line}", soft_wrap=True, highlight=False, markup=False)


def _default_cmd(
    split: str = typer.Option("train", help="train, or probe (held-out episodes)."),
) -> None:
    """Print the folder of the built-in synthetic shards (generated into the user cache on first use)."""
    from ssltk.data.synth.cache import default_synthetic_shards

    typer.echo(str(default_synthetic_shards(split)))


def register(app: typer.Typer, state: AppState) -> None:
    """Add the ``data`` group to ``app``."""
    data_app = typer.Typer(help="Make, pack and inspect episode shards (docs/data.md).", no_args_is_help=True)
    data_app.command("synth")(friendly(_synth_cmd))
    data_app.command("pack")(friendly(_pack_cmd))
    data_app.command("inspect")(friendly(_inspect_cmd))
    data_app.command("default")(friendly(_default_cmd))
    app.add_typer(data_app, name="data")
