"""Error lines print as written: brackets in values (paths, keys, extras) are not eaten as rich markup."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ssltk.cli import build_app
from ssltk.plugins import get_plugin_manager


@pytest.fixture(scope="module")
def app():
    return build_app(get_plugin_manager(load=["ssltk"]))


@pytest.mark.parametrize("args, shown", [
    (["pretrain", "--data", "no[such]dir", "--out", "{tmp}/r"], "no[such]dir"),
    (["pretrain", "--set", "a[b]=1", "--out", "{tmp}/r"], "a[b]"),
    (["pretrain", "--logger", "ml[flow]", "--out", "{tmp}/r"], "ml[flow]"),
    (["embed", "{tmp}/b[1]", "--out", "{tmp}/f.npy"], "b[1]"),
    (["export", "{tmp}/b[1]", "--format", "torchscript"], "b[1]"),
    (["bundle", "inspect", "{tmp}/b[1]"], "b[1]"),
    (["probe", "{tmp}/b[1]"], "b[1]"),
])  # fmt: skip
def test_brackets_survive_in_error_lines(app, tmp_path, args, shown):
    result = CliRunner().invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert shown in lines[0], lines[0]
