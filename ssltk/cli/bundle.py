"""``ssltk bundle inspect | verify``: look at and check a run's output bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from ssltk.cli._util import AppState, console, err_console, friendly, print_json, print_key_values


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover


def _count(n: Any) -> str:
    if not isinstance(n, int):
        return _fmt(n)
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) or "-"
    return "-" if value is None else str(value)


def _summary_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    bb, inp, data = info["backbone"] or {}, info["input"] or {}, info["data"] or {}
    objectives = [f"{o.get('name')} (weight {_fmt(o.get('weight'))})" for o in info["objectives"] or []]
    kwargs = f" {_fmt(bb.get('kwargs'))}" if bb.get("kwargs") else ""
    state = info["train_state"]
    versions = info["versions"] or {}
    return [
        ("backbone", f"{bb.get('family')}:{bb.get('name')}{kwargs} — {bb.get('num_features')} features, "
                     f"{_count(bb.get('parameters'))} parameters"),
        ("input", f"{'x'.join(str(v) for v in inp.get('input_size') or [])}, mean {_fmt(inp.get('mean'))}, std {_fmt(inp.get('std'))}, "
                  f"{inp.get('interpolation')}"),
        ("objectives", "; ".join(objectives) or "-"),
        ("heads", _fmt(list((info["heads"] or {}).keys()))),
        ("views", _fmt((info["views"] or {}).get("slots")) + " | cameras " + _fmt((info["views"] or {}).get("cameras"))),
        ("data", f"{_fmt(data.get('num_shards'))} shards from {_fmt(data.get('spec'))}, checksum {_fmt(data.get('checksum'))}"),
        ("steps", f"{_fmt(info['steps'])} (seed {_fmt(info['seed'])}, world size {_fmt(info['world_size'])}, "
                  f"global batch {_fmt(info['global_batch'])})"),
        ("final metrics", _fmt(info["final_metrics"])),
        ("versions", _fmt(versions)),
        ("plugins", ", ".join(f"{n} ({p.get('dist')} {p.get('version')})" for n, p in (info["plugins"] or {}).items()) or "-"),
        ("files", f"{len(info['files'])} files, {_size(info['total_bytes'])}: " + ", ".join(info["files"])),
        ("train state", f"step {state['step']} in {state['path']}" if state else "none"),
        ("created", _fmt(info["created"])),
    ]


def verify_summary(path: Path, m: dict[str, Any]) -> str:
    """The line ``bundle verify`` prints for a bundle without problems."""
    from ssltk.checkpoint import TRAIN_STATE_DIR, find_train_state

    files = m["files"]
    total = sum(e.get("bytes") or 0 for e in files.values())
    line = (f"ok: {len(files)} files ({_size(total)}) match their sha256; "
            f"backbone {m['backbone']['name']} loads with 0 missing / 0 unexpected keys; "
            f"{len(m.get('heads') or {})} head(s)")  # fmt: skip
    if m.get("train_state"):
        line += f"; train state (step {m['train_state'].get('step')}) matches the hashes the bundle recorded"
    elif find_train_state(path / TRAIN_STATE_DIR) is not None:
        line += "; train state unverified: this bundle recorded no hashes for it (only its own state.json was checked)"
    return line


def register(app: typer.Typer, state: AppState) -> None:
    """Add the ``bundle`` group to ``app``."""
    bundle_app = typer.Typer(
        name="bundle",
        help="Inspect and verify output bundles (weights + config + manifest).",
        no_args_is_help=True,
    )

    @bundle_app.command("inspect")
    @friendly
    def inspect_cmd(
        path: Path = typer.Argument(..., help="The bundle folder (a run's --out)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
    ) -> None:
        """Summarise a bundle: backbone, objectives, data, steps, metrics, versions, files."""
        from ssltk.bundle import inspect_bundle

        info = inspect_bundle(path)
        if as_json:
            print_json(info)
            return
        print_key_values(f"bundle {path} (format {info['format_version']})", _summary_rows(info))

    @bundle_app.command("verify")
    @friendly
    def verify_cmd(path: Path = typer.Argument(..., help="The bundle folder.")) -> None:
        """Check file hashes, the manifest, and that the weights load (exit 1 on problems)."""
        from ssltk.bundle import read_manifest, verify_bundle

        problems = verify_bundle(path)
        if problems:
            err_console.print(f"[bold red]{escape(str(path))}: {len(problems)} problem(s)[/]", soft_wrap=True)
            for problem in problems:
                err_console.print(f"  - {problem}", soft_wrap=True, markup=False, highlight=False)
            raise typer.Exit(1)
        console.print(verify_summary(path, read_manifest(path)), soft_wrap=True, markup=False)

    app.add_typer(bundle_app, name="bundle")
