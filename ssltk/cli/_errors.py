"""The root command group: every command-line mistake and failure ends in one line.

Click and Typer print a usage line, a hint and a boxed panel for a mistyped
option; ssltk prints ``error: <what is wrong>; did you mean ...? (see `ssltk X --help`)``
and exits 2. A failure inside a command that slipped past :func:`ssltk.cli._util.friendly`
(a plugin's command, say) is reduced to one line with exit 1 the same way.
"""

from __future__ import annotations

import difflib
import sys
from typing import Any, Sequence

from typer.core import TyperGroup
from typer.exceptions import Abort

try:  # Typer >= 0.20 vendors its own copy of Click
    from typer._click import exceptions as click
    from typer._click.core import Context
except ImportError:  # pragma: no cover - older Typer on plain Click
    import click
    from click import Context

from ssltk.cli._util import _print, report_failure

# Names users reach for first -> the option ssltk calls it (offered as "did you mean").
OPTION_ALIASES = {
    "--learning-rate": "--lr", "--learning_rate": "--lr", "--output": "--out", "--output-dir": "--out",
    "--out-dir": "--out", "--epochs": "--steps", "--max-steps": "--steps", "--iters": "--steps",
    "--bs": "--batch-size", "--batch": "--batch-size", "--workers": "--num-workers", "--jobs": "--workers",
    "--img-size": "--image-size", "--size": "--image-size", "--resolution": "--image-size",
    "--model": "--backbone", "--arch": "--backbone", "--loss": "--objective", "--dataset": "--data",
    "--shards": "--data", "--weights": "--init", "--pretrained": "--init", "--gpu": "--device",
    "--amp": "--precision", "--continue": "--resume", "--force": "--overwrite",
}  # fmt: skip


def suggest_options(name: str, ctx: Context | None) -> list[str]:
    """Close matches for a mistyped option among the command's options and :data:`OPTION_ALIASES`."""
    if ctx is None:
        return []
    known = [opt for p in ctx.command.params for opt in (*p.opts, *p.secondary_opts) if opt.startswith("--")]
    aliases = {a: t for a, t in OPTION_ALIASES.items() if t in known}
    hits = difflib.get_close_matches(name, known + list(aliases), n=4, cutoff=0.6)
    out: list[str] = []
    for hit in hits:
        target = aliases.get(hit, hit)
        if target not in out:
            out.append(target)
    return out[:3]


def usage_line(exc: click.ClickException) -> str:
    """One line for a Click usage error: what is wrong, close matches, where the help is."""
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.NoSuchOption):
        message = f"no such option {exc.option_name}"
        matches = suggest_options(exc.option_name, ctx)
        if matches:
            message += "; did you mean " + ", ".join(matches) + "?"
    else:
        message = " ".join(exc.format_message().split())
        if message and message[0].isupper() and not message[1:2].isupper():
            message = message[0].lower() + message[1:]
    message = message.rstrip(".")
    if ctx is not None:
        message += f" (see `{ctx.command_path} --help`)"
    return message


# Options whose value may be left out (Click has no optional values): alone, they get this value.
OPTIONAL_VALUES = {"--resume": ""}  # `ssltk pretrain --resume` = the last run in --out


def fill_optional_values(args: Sequence[str]) -> list[str]:
    """``[..., "--resume"]`` or ``["--resume", "--out", ...]`` -> the option followed by its empty value."""
    out: list[str] = []
    args = list(args)
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == "--":
            out.extend(args[i + 1:])
            break
        if arg in OPTIONAL_VALUES and (i + 1 == len(args) or args[i + 1].startswith("-")):
            out.append(OPTIONAL_VALUES[arg])
    return out


class SsltkGroup(TyperGroup):
    """The ``ssltk`` group: Typer's, with one-line errors instead of usage panels and tracebacks."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        args = fill_optional_values(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.NoArgsIsHelpError as exc:
            exc.show()  # the help text itself, as Typer prints it
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            _print(usage_line(exc))
            sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
        except Abort:
            _print("aborted")
            sys.exit(1)
        except Exception as exc:  # noqa: BLE001 - a command (e.g. a plugin's) that raised past friendly()
            sys.exit(report_failure(exc))
        sys.exit(rv if isinstance(rv, int) else 0)
