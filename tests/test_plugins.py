"""The plugin manager and registry: entry-point loading, switches, duplicates, broken plugins, hooks."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata

import pytest
import typer
from plugin_helpers import TWIN_SOURCE, TinyObjective, fake_dist, objective_plugin  # noqa: F401
from typer.testing import CliRunner

import ssltk
from ssltk import hookspecs
from ssltk.backbones import BackboneFamily
from ssltk.cli import build_app
from ssltk.errors import BrokenPluginError, DuplicateNameError, UnknownNameError
from ssltk.plugins import get_plugin_manager
from ssltk.registry import Registry


def builtins(**kwargs) -> ssltk.Registry:
    return Registry(get_plugin_manager(load=["ssltk"], **kwargs))


# -- loading through entry points ------------------------------------------------------


def test_builtins_load_from_real_entry_point_metadata():
    declared = {ep.name: ep.value for ep in metadata.distribution("ssltk").entry_points if ep.group == "ssltk"}
    assert declared["timm"] == "ssltk_builtins.entry_points:timm"
    pm = get_plugin_manager(load=["ssltk"])
    assert set(pm.infos) == set(declared)  # every builtin is loaded or recorded broken
    info = pm.infos["timm"]
    assert (info.dist, info.version) == ("ssltk", metadata.version("ssltk"))
    assert info.module == "ssltk_builtins.entry_points:timm"
    entry = Registry(pm).backbones["timm"]
    assert entry.plugin.dist == "ssltk" and entry.plugin.name == "timm"


def test_third_party_dist_loads_with_its_name_and_version(fake_dist):
    fake_dist("ssltk-twin", {"ssltk_twin_mod": TWIN_SOURCE}, {"twin": "ssltk_twin_mod"}, version="4.5.6")
    entry = Registry(get_plugin_manager(load=["ssltk-twin"])).objective("twin")
    assert (entry.plugin.name, entry.plugin.dist, entry.plugin.version) == ("twin", "ssltk-twin", "4.5.6")
    assert entry.summary == "The twin objective from a fake distribution."


def test_load_env_selects_distributions(fake_dist, monkeypatch):
    fake_dist("ssltk-twin", {"ssltk_twin_mod": TWIN_SOURCE}, {"twin": "ssltk_twin_mod"})
    monkeypatch.setenv("SSLTK_LOAD_PLUGINS", "ssltk")
    assert "twin" not in get_plugin_manager().infos and "timm" in get_plugin_manager().infos
    monkeypatch.setenv("SSLTK_LOAD_PLUGINS", " ssltk-twin ,")
    assert set(get_plugin_manager().infos) == {"twin"}
    monkeypatch.delenv("SSLTK_LOAD_PLUGINS")
    assert {"twin", "timm"} <= set(get_plugin_manager().infos)  # unset: everything installed


def test_empty_load_env_loads_nothing(monkeypatch):
    monkeypatch.setenv("SSLTK_LOAD_PLUGINS", "")
    pm = get_plugin_manager()
    assert pm.infos == {} and pm.get_plugins() == set()
    with pytest.raises(UnknownNameError):
        Registry(pm).backbone("resnet18")


def test_load_argument_overrides_env(monkeypatch):
    monkeypatch.setenv("SSLTK_LOAD_PLUGINS", "")
    assert "timm" in get_plugin_manager(load=["ssltk"]).infos


def test_disable_env_blocks_by_entry_point_name_or_distribution(monkeypatch, fake_dist):
    fake_dist("ssltk-twin", {"ssltk_twin_mod": TWIN_SOURCE}, {"twin": "ssltk_twin_mod"})
    monkeypatch.setenv("SSLTK_DISABLE_PLUGINS", "timm")
    reg = Registry(get_plugin_manager(load=["ssltk", "ssltk-twin"]))
    assert "timm" not in reg.backbones and "twin" in reg.objectives
    monkeypatch.setenv("SSLTK_DISABLE_PLUGINS", "ssltk-twin, ssltk")
    assert get_plugin_manager(load=["ssltk", "ssltk-twin"]).infos == {}


def test_blocked_argument_adds_to_the_env(monkeypatch):
    monkeypatch.setenv("SSLTK_DISABLE_PLUGINS", "per-frame")
    infos = get_plugin_manager(load=["ssltk"], blocked=["timm"]).infos
    assert "timm" not in infos and "per-frame" not in infos


# -- names: duplicates and unknowns -----------------------------------------------------


def test_duplicate_objective_names_both_providers(fake_dist):
    fake_dist("ssltk-twin", {"ssltk_twin_mod": TWIN_SOURCE}, {"twin": "ssltk_twin_mod"}, version="2.0")
    pm = get_plugin_manager(load=["ssltk-twin"], plugins=[("other-twin", objective_plugin("twin"))])
    with pytest.raises(DuplicateNameError) as err:
        Registry(pm)
    msg = str(err.value)
    assert "'twin'" in msg and "'other-twin'" in msg and "ssltk-twin 2.0" in msg
    assert "SSLTK_DISABLE_PLUGINS" in msg


def test_alias_clashing_with_a_name_is_a_duplicate():
    pm = get_plugin_manager(
        load=[], plugins=[("a", objective_plugin("alpha")), ("b", objective_plugin("beta", aliases=("alpha",)))]
    )
    with pytest.raises(DuplicateNameError, match="'alpha'.*'a'.*'b'|'alpha'.*'b'.*'a'"):
        Registry(pm)


def test_invalid_name_makes_the_plugin_broken():
    reg = Registry(get_plugin_manager(load=[], plugins=[("caps", objective_plugin("Bad Name"))]))
    assert reg.objectives == {} and "invalid objective name" in reg.pm.infos["caps"].error


def test_unknown_objective_suggests_close_matches():
    reg = Registry(get_plugin_manager(load=[], plugins=[("t", objective_plugin("temporal-order", "per-camera"))]))
    with pytest.raises(UnknownNameError) as err:
        reg.objective("temporal-ordr")
    assert err.value.suggestions == ["temporal-order"]
    assert "did you mean 'temporal-order'?" in str(err.value)


def test_alias_resolves_to_the_objective():
    reg = Registry(get_plugin_manager(load=[], plugins=[("t", objective_plugin("temporal-order", aliases=("tord",)))]))
    assert reg.objective("tord") is reg.objective("temporal-order")


def test_unknown_backbone_suggests_close_timm_names():
    reg = builtins()
    with pytest.raises(UnknownNameError) as err:
        reg.backbone("resnet5")
    assert "resnet50" in err.value.suggestions
    with pytest.raises(UnknownNameError, match="did you mean 'resnet18'"):
        reg.backbone("timm:resnet18x")


def test_unknown_name_points_at_broken_plugins(fake_dist):
    fake_dist("ssltk-boom", {"ssltk_boom_mod": "raise RuntimeError('no GPU driver')"}, {"boom": "ssltk_boom_mod"})
    reg = Registry(get_plugin_manager(load=["ssltk-boom"]))
    with pytest.raises(BrokenPluginError, match=r"boom \(ssltk-boom\).*ssltk list-plugins"):
        reg.objective("anything")


# -- broken plugins ---------------------------------------------------------------------


def test_plugin_raising_on_import_is_recorded_with_one_line(fake_dist):
    source = "raise RuntimeError('cannot find libfoo.so\\nsecond line of detail')\n"
    fake_dist("ssltk-boom", {"ssltk_boom_mod": source}, {"boom": "ssltk_boom_mod"}, version="0.9")
    pm = get_plugin_manager(load=["ssltk", "ssltk-boom"])
    info = pm.infos["boom"]
    assert info.broken and (info.dist, info.version, info.module) == ("ssltk-boom", "0.9", "ssltk_boom_mod")
    assert info.error == "RuntimeError: cannot find libfoo.so"
    assert not pm.has_plugin("boom")
    assert "timm" in Registry(pm).backbones  # the others still work


def test_entry_point_to_a_missing_module_is_broken(fake_dist):
    fake_dist("ssltk-ghost", {}, {"ghost": "ssltk_no_such_module"})
    info = get_plugin_manager(load=["ssltk-ghost"]).infos["ghost"]
    assert info.error == "ModuleNotFoundError: No module named 'ssltk_no_such_module'"


def test_plugin_raising_inside_its_hook_is_broken_and_dropped():
    class HalfBroken:
        @ssltk.hookimpl
        def register_objectives(self, register):
            register("half", TinyObjective)
            raise ValueError("config file missing")

    pm = get_plugin_manager(load=[], plugins=[("half", HalfBroken()), ("ok", objective_plugin("fine"))])
    reg = Registry(pm)
    assert "half" not in reg.objectives and "fine" in reg.objectives
    assert pm.infos["half"].error == "ValueError: config file missing"


def test_misspelled_hook_is_broken_via_check_pending():
    class Typo:
        @ssltk.hookimpl
        def register_objectivs(self, register):  # missing "e"
            register("never", TinyObjective)

    pm = get_plugin_manager(load=[], plugins=[("typo", Typo()), ("ok", objective_plugin("fine"))])
    assert pm.infos["typo"].broken and "register_objectivs" in pm.infos["typo"].error
    assert not pm.has_plugin("typo") and pm.has_plugin("ok")
    assert list(Registry(pm).objectives) == ["fine"]


def test_misspelled_hook_in_an_installed_dist_is_broken(fake_dist):
    source = "import ssltk\n\n@ssltk.hookimpl\ndef register_backbone(register):\n    pass\n"
    fake_dist("ssltk-typo", {"ssltk_typo_mod": source}, {"typo": "ssltk_typo_mod"})
    info = get_plugin_manager(load=["ssltk-typo"]).infos["typo"]
    assert info.broken and info.dist == "ssltk-typo" and "unknown hook 'register_backbone'" in info.error


def test_trace_env_prints_loading_and_hook_calls(monkeypatch, capsys, fake_dist):
    fake_dist("ssltk-twin", {"ssltk_twin_mod": TWIN_SOURCE}, {"twin": "ssltk_twin_mod"}, version="3.1")
    monkeypatch.setenv("SSLTK_TRACE_PLUGINS", "1")
    pm = get_plugin_manager(load=["ssltk-twin"])
    Registry(pm)
    pm.hook.bundle_metadata(manifest={})
    err = capsys.readouterr().err
    assert "loaded twin (ssltk-twin 3.1) from ssltk_twin_mod" in err
    assert "call register_objectives -> twin" in err
    assert "bundle_metadata" in err  # pluggy's own tracing of pm.hook calls


def test_no_trace_without_the_env(capsys):
    Registry(get_plugin_manager(load=["ssltk"]))
    assert capsys.readouterr().err == ""


# -- one test per hook (tests/test_docs.py checks that each hook has one) --------------


def test_hook_register_objectives():
    reg = Registry(get_plugin_manager(load=[], plugins=[("tiny", objective_plugin("tiny", aliases=("t1",)))]))
    entry = reg.objective("tiny")
    assert issubclass(entry.obj, ssltk.Objective) and entry.obj.name == "tiny"
    assert entry.summary == "Tiny objective tiny." and entry.plugin.name == "tiny" and entry.plugin.dist == "-"
    assert reg.objective("t1") is entry


class ToyFamily(BackboneFamily):
    """Toy backbones for tests."""

    name = "toy"

    def list_models(self, pattern=None):
        return ["toy-small", "toy-large"]


def test_hook_register_backbones():
    class Plugin:
        @ssltk.hookimpl
        def register_backbones(self, register):
            register(ToyFamily())

    reg = Registry(get_plugin_manager(load=["ssltk"], plugins=[("toys", Plugin())]))
    entry, model = reg.backbone("toy:toy-small")
    assert (entry.name, model, entry.plugin.name) == ("toy", "toy-small", "toys")
    assert entry.summary == "Toy backbones for tests."
    assert reg.backbone("toy-large")[0] is entry  # a bare name unique to one family
    assert reg.backbone("resnet18")[0].name == "timm"
    with pytest.raises(UnknownNameError, match="did you mean 'toy-small'"):
        reg.backbone("toy:toy-smal")


def test_hook_register_commands():
    class Plugin:
        @ssltk.hookimpl
        def register_commands(self, app):
            @app.command("hello")
            def hello(name: str = typer.Option("world", help="Who to greet.")) -> None:
                """Say hello (a command added by a plugin)."""
                typer.echo(f"hello {name}")

    app = build_app(get_plugin_manager(load=[], plugins=[("hello", Plugin())]))
    runner = CliRunner()
    result = runner.invoke(app, ["hello", "--name", "ssltk"])
    assert result.exit_code == 0 and result.stdout == "hello ssltk\n"
    assert "Say hello" in runner.invoke(app, ["--help"]).stdout


def test_hook_bundle_metadata():
    class Weather:
        @ssltk.hookimpl
        def bundle_metadata(self, manifest):
            return {"weather": "rain", "objective": manifest["objective"]}

    class Silent:
        @ssltk.hookimpl
        def bundle_metadata(self, manifest):
            return None

    pm = get_plugin_manager(load=[], plugins=[("weather", Weather()), ("silent", Silent())])
    results = pm.hook.bundle_metadata(manifest={"objective": "frame-order"})
    assert results == [{"weather": "rain", "objective": "frame-order"}]  # pluggy drops None results
    impls = {impl.plugin_name for impl in pm.hook.bundle_metadata.get_hookimpls()}
    assert impls == {"weather", "silent"}


def test_every_hookspec_is_known_to_the_manager():
    pm = get_plugin_manager(load=[])
    specs = {name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "ssltk_spec")}
    assert {"register_objectives", "register_backbones", "register_commands", "bundle_metadata"} <= specs
    assert all(getattr(pm.hook, name).spec is not None for name in specs)


# -- start-up cost -------------------------------------------------------------------------


def test_help_and_light_commands_do_not_import_torch():
    """Entry points, `import ssltk` and the CLI's help stay light: torch loads when a command needs it."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from ssltk.cli import build_app\n"
        "app = build_app()\n"
        "for args in (['--help'], ['pretrain', '--help'], ['data', '--help'], ['--version']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'torchvision', 'numpy') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SSLTK_LOAD_PLUGINS"}  # every installed plugin
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", f"imported at start-up: {res.stdout.strip()}"


def test_builtin_implementations_load_when_the_registry_is_built():
    code = (
        "import sys\n"
        "from ssltk import Registry, get_plugin_manager\n"
        "pm = get_plugin_manager(load=['ssltk'])\n"
        "before = 'ssltk_builtins.temporal_infonce' in sys.modules\n"
        "reg = Registry(pm)\n"
        "print(before, reg.objective('temporal-infonce').obj.__module__)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "ssltk_builtins.temporal_infonce"]


def test_submodules_are_attributes_after_a_plain_import():
    code = "import ssltk\nprint(ssltk.batch.select.__name__, ssltk.views.ViewPlan.__name__)\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["select", "ViewPlan"]
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        ssltk.nonexistent  # noqa: B018
