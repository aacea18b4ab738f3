"""Soak the CLI with random bad input: no traceback, and nothing left behind, ever.

    .venv/bin/python benchmarks/soak_bad_inputs.py              # 200 cases, seed 0
    .venv/bin/python benchmarks/soak_bad_inputs.py --cases 50 --seed 3 --subprocess 5 -v

Each case takes a command with a small valid baseline (tiny generated shards, one training
step of ``test_resnet``) and replaces one or two of its options with a bad value generated
from the option schema (each option's type from the Typer command, each ``--set`` key's type
from ``TrainConfig``): a wrong type, an out-of-range number, a missing or wrong kind of path,
unicode, a very long string, an unknown option. It runs the case through the CLI (in process
with Typer's CliRunner; ``--subprocess N`` of them through ``python -m ssltk``) and counts:

- tracebacks: a traceback in the output, or an exception that escaped the CLI;
- leftovers: after a failed case, its output folder exists, or a staging folder
  (``train_state.tmp-*``, ``.ssltk-write-*``, ``*.tmp-*``) exists anywhere under the case root;
- multi-line errors: a failure whose stderr is more than two lines;
- bad exit codes: anything but 0, 1 and 2.

Both of the first two counts must be 0. Not part of the test suite (it takes minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import typing
from enum import Enum
from pathlib import Path

os.environ.setdefault("SSLTK_LOAD_PLUGINS", "ssltk")
os.environ.setdefault("OMP_NUM_THREADS", "1")

LONG = "x" * 5000
UNICODE = ["Ünïcødé-🚗", "ｆｒｏｎｔ", "\u202eevil", "日本語/パス", "٣"]
STAGING = ("train_state.tmp-*", ".ssltk-write-*", "*.tmp-*")


def bad_values(kind: typing.Any, root: Path, rng: random.Random) -> list[str]:
    """Bad values for an option of Python type ``kind``."""
    if kind is int:
        return ["abc", "-5", "0", "3.5", "", "1e3", "٣", LONG, "9" * 40, "-9999999999"]
    if kind is float:
        return ["abc", "nan", "inf", "-inf", "-1", "", "1e400", "0x10", LONG, "1,5"]
    if kind is Path:
        f = root / "a-file.txt"
        f.write_text("not what you want\n")
        return [str(root / "missing" / "x"), str(f), str(root), "", LONG, str(root / rng.choice(UNICODE))]
    if isinstance(kind, type) and issubclass(kind, Enum):
        return ["nope", "", "OBJECTIVE", LONG]
    # str and list[str]
    return ["", LONG, *UNICODE, str(root / "missing"), "a,b,,c", "-", "=", "../../../../etc/passwd"]


def set_values(rng: random.Random) -> list[str]:
    """Bad ``--set KEY=VALUE`` pairs from TrainConfig's fields and their types."""
    from ssltk.train.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    key = rng.choice(list(hints))
    kind = hints[key]
    generic = ["abc", "-1", "0", "[1, 2]", "{a: 1}", "null", LONG, rng.choice(UNICODE), "1e400", ""]
    if kind is int:
        generic += ["1.5", "-100", "true"]
    if key in ("objectives", "augment", "backbone_kwargs"):
        generic += ["[{name: nope}]", "{temporal-infonce: {weight: -1}}", "{drop_path_rate: abc}", "7"]
    pairs = [f"{key}={rng.choice(generic)}", f"{key[:-1] or 'x'}=1", "learning_rat=1", "=1", "noequals",
             f"temporal-infonce.{rng.choice(['dt', 'temperature', 'proj_dim', 'nope'])}={rng.choice(generic)}",
             f"augment.{rng.choice(['enabled', 'crop_scale', 'nope'])}={rng.choice(generic)}",
             f"{rng.choice(UNICODE)}.x=1"]
    return [rng.choice(pairs)]


def schema(app) -> dict[str, list[tuple[str, typing.Any, bool]]]:
    """``{command path: [(option or argument name, python type, is_argument)]}`` from the Typer app."""
    from typer.main import get_command

    def walk(group, path=()):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from walk(cmd, (*path, name))
            else:
                yield " ".join((*path, name)), cmd

    out = {}
    for name, cmd in walk(get_command(app)):
        params = []
        for p in cmd.params:
            kind = p.type_descriptor.annotation
            kind = typing.get_args(kind)[0] if typing.get_origin(kind) in (list, typing.Union) else kind
            if kind is bool:
                continue
            params.append((p.opts[0] if p.opts and p.opts[0].startswith("-") else p.name, kind, not p.opts[0].startswith("-")))
        out[name] = params
    return out


def baseline(command: str, root: Path, shards: Path, bundle: Path) -> tuple[list[str], Path | None]:
    """A valid, quick invocation of ``command`` and the output folder it would create."""
    out = root / "out"
    tiny = ["--backbone", "test_resnet", "--image-size", "32", "--batch-size", "8", "--num-workers", "0",
            "--steps", "1", "--set", "temporal-infonce.dt=1-4", "--set", "threads=1", "--set", "warmup_steps=0"]
    return {
        "pretrain": (["pretrain", *tiny, "--data", str(shards), "--out", str(out)], out),
        "data inspect": (["data", "inspect", str(shards)], None),
        "data synth": (["data", "synth", "--out", str(out), "--episodes", "1", "--length", "8", "--image-size", "16",
                        "--cameras", "front", "--segment-length", "8", "--overlap", "0"], out),
        "data pack": (["data", "pack", str(root / "raw"), "--out", str(out)], out),
        "bundle inspect": (["bundle", "inspect", str(bundle)], None),
        "bundle verify": (["bundle", "verify", str(bundle)], None),
        "list-plugins": (["list-plugins"], None),
    }[command]


def mutate(command: str, args: list[str], params, root: Path, rng: random.Random) -> list[str]:
    """Replace one or two options of ``args`` with bad values (or add an unknown option)."""
    args, words = list(args), len(command.split())
    for _ in range(rng.choice((1, 1, 2))):
        roll = rng.random()
        if roll < 0.08:
            args.append(rng.choice(["--lerning-rate", "--epochs", "--out-dir", "-z", "--" + rng.choice(UNICODE)]))
            continue
        if roll < 0.25 and args[0] == "pretrain":
            args += ["--set", *set_values(rng)]
            continue
        name, kind, is_arg = rng.choice(params)
        if name in ("--resume", "--config", "--init") and args[0] == "pretrain":
            value = rng.choice(bad_values(Path, root, rng))
        else:
            value = rng.choice(bad_values(kind, root, rng))
        if is_arg:  # the command's positional argument follows its command words
            if words < len(args) and not args[words].startswith("-"):
                args[words] = value
            continue
        if name in args:
            args[args.index(name) + 1] = value
        else:
            args += [name, value]
    return args


class Timeout(Exception):
    pass


def _alarm(signum, frame):  # noqa: ARG001
    raise Timeout()


def run_case(app, args: list[str], use_subprocess: bool, timeout: int) -> tuple[int, str, str, BaseException | None]:
    if use_subprocess:
        try:
            res = subprocess.run([sys.executable, "-m", "ssltk", *args], capture_output=True, text=True,
                                 timeout=timeout, env={**os.environ})
        except subprocess.TimeoutExpired:
            return -1, "", "timeout", Timeout()
        except ValueError as exc:  # e.g. an embedded NUL: the OS refuses such an argv
            return 2, "", f"error: {exc}", None
        return res.returncode, res.stdout, res.stderr, None
    from typer.testing import CliRunner

    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        r = CliRunner().invoke(app, args)
    except Timeout as exc:
        return -1, "", "timeout", exc
    finally:
        signal.alarm(0)
    escaped = r.exception if r.exception is not None and not isinstance(r.exception, SystemExit) else None
    return r.exit_code, r.stdout, r.stderr, escaped


def prepare(root: Path) -> tuple[Path, Path]:
    """Tiny shards, a raw episode folder and a finished bundle to soak against."""
    from typer.testing import CliRunner

    from ssltk.cli import build_app
    from ssltk.plugins import get_plugin_manager
    from ssltk.testing.shards import write_tiny_shards

    shards = root / "shards"
    write_tiny_shards(shards, episodes=3, length=12, cameras=("front",), image_size=32, segment_length=12)
    bundle = root / "bundle"
    r = CliRunner().invoke(build_app(get_plugin_manager(load=["ssltk"])), [
        "pretrain", "--backbone", "test_resnet", "--image-size", "32", "--batch-size", "8", "--num-workers", "0",
        "--steps", "1", "--set", "temporal-infonce.dt=1-4", "--data", str(shards), "--out", str(bundle)])
    if r.exit_code != 0:
        raise SystemExit(f"could not make the soak bundle: {r.output}")
    return shards, bundle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--subprocess", type=int, default=10, help="how many cases run through `python -m ssltk`")
    ap.add_argument("--timeout", type=int, default=120, help="seconds per case")
    ap.add_argument("--json", type=Path, help="write the counts and the failing cases here")
    ap.add_argument("-v", "--verbose", action="store_true")
    opts = ap.parse_args()

    from ssltk.cli import build_app
    from ssltk.plugins import get_plugin_manager

    rng = random.Random(opts.seed)
    app = build_app(get_plugin_manager(load=["ssltk"]))
    params = schema(app)
    commands = ["pretrain"] * 5 + ["data inspect", "data synth", "data pack", "bundle inspect", "bundle verify",
                                   "list-plugins"]
    base = Path(tempfile.mkdtemp(prefix="ssltk-soak-"))
    here = Path.cwd()
    os.chdir(base)  # a relative bad path ("a,b,,c", "-") lands in the soak folder, never in the caller's
    shards, bundle = prepare(base / "fixtures")
    sub = set(rng.sample(range(opts.cases), min(opts.subprocess, opts.cases)))
    counts = {"cases": 0, "tracebacks": 0, "leftovers": 0, "multi_line_errors": 0, "bad_exit_codes": 0,
              "timeouts": 0, "exit_0": 0, "exit_1": 0, "exit_2": 0, "subprocess": 0}
    problems, accepted = [], []
    t0 = time.perf_counter()
    for i in range(opts.cases):
        command = rng.choice(commands)
        root = base / f"case-{i:03d}"
        root.mkdir()
        (root / "raw").mkdir()
        args, out = baseline(command, root, shards, bundle)
        args = mutate(command, args, params[command], root, rng)
        code, stdout, stderr, escaped = run_case(app, args, i in sub, opts.timeout)
        counts["cases"] += 1
        counts["subprocess"] += i in sub
        found = []
        if isinstance(escaped, Timeout):
            counts["timeouts"] += 1
            found.append("timeout")
        elif escaped is not None or "Traceback (most recent call last)" in stdout + stderr:
            counts["tracebacks"] += 1
            found.append(f"traceback: {type(escaped).__name__ if escaped else 'in output'}")
        if code not in (0, 1, 2, -1):
            counts["bad_exit_codes"] += 1
            found.append(f"exit {code}")
        counts[f"exit_{code}"] = counts.get(f"exit_{code}", 0) + 1
        error_lines = [ln for ln in stderr.splitlines() if ln.strip()]
        if code in (1, 2) and len(error_lines) > 2 and command != "data inspect":  # inspect lists each damaged shard
            counts["multi_line_errors"] += 1
            found.append(f"{len(error_lines)} stderr lines")
        stale = [str(p.relative_to(base)) for pattern in STAGING for p in base.rglob(pattern)]
        strays = [p for p in base.iterdir() if p.name not in ("fixtures", root.name)]
        if code != 0 and strays:  # a failed case that wrote somewhere relative
            stale += [f"{p.name}/" for p in strays]
        if code != 0 and out is not None and out.exists() and "timeout" not in found:
            stale.append(f"{out.name}/ ({len(list(out.rglob('*')))} entries)")
        if stale:
            counts["leftovers"] += 1
            found.append(f"leftovers: {stale[:4]}")
        line = (error_lines or [""])[-1][:160]
        if code == 0:  # a "bad" value that was accepted: worth a look (often an option the case leaves unused)
            accepted.append([a[:80] for a in args[len(baseline(command, root, shards, bundle)[0]):]] or args[:6])
        if found:
            problems.append({"case": i, "args": [a[:80] for a in args], "exit": code, "problems": found,
                             "stderr_tail": stderr[-1500:]})
        if opts.verbose or found:
            print(f"[{i:3d}] exit {code} {' '.join(a[:30] for a in args)[:150]}\n      {line}"
                  + (f"\n      PROBLEM: {found}" if found else ""), flush=True)
        for p in [root, *strays]:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    os.chdir(here)
    counts["seconds"] = round(time.perf_counter() - t0, 1)
    shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(counts, indent=2))
    if opts.json:
        opts.json.write_text(json.dumps({"counts": counts, "problems": problems, "accepted": accepted}, indent=2))
    sys.exit(1 if counts["tracebacks"] or counts["leftovers"] else 0)


if __name__ == "__main__":
    main()
