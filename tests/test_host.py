"""The playpen host: entry-point discovery, plugins, CLI errors, config parsing, import cost."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from playpen import config as cfg
from playpen.errors import PlaypenError
from playpen_tune.config import SFTQLoRAConfig

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "trl", "clemcore.cli")


def loaded_heavy_modules(*argv: str) -> list[str]:
    code = (f"import sys\nfrom playpen.cli import main\ntry:\n    main({list(argv)!r})\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return [m for m in out.rsplit("HEAVY=", 1)[1].strip().split(",") if m]


@pytest.mark.parametrize("argv", [["--help"], ["list", "learners"], ["list", "plugins"]])
def test_fast_commands_import_no_heavy_library(argv):
    assert loaded_heavy_modules(*argv) == []


def test_learners_come_from_entry_points(playpen):
    from importlib.metadata import entry_points

    declared = {ep.name: ep.value for ep in entry_points(group="playpen.learners")}
    assert declared["sft_qlora"] == "playpen_tune.learners.sft:SFTQLoRALearner"
    assert declared["dpo_qlora"] == "playpen_tune.learners.dpo:DPOQLoRALearner"
    result = playpen("list", "learners")
    assert result.code == 0
    assert "sft_qlora" in result.out and "dpo_qlora" in result.out
    assert "playpen-tune 0.1.0" in result.out


def test_builtin_plugin_is_an_entry_point_with_its_hooks(playpen):
    from importlib.metadata import entry_points

    assert {ep.name: ep.value for ep in entry_points(group="playpen")}["playpen_tune"] == "playpen_tune.plugin"
    result = playpen("list", "plugins")
    assert "playpen_tune  [playpen-tune 0.1.0]" in result.out
    assert "playpen_before_learn" in result.out and "playpen_register_backends" in result.out


def test_hook_tracing_env_var_prints_hook_calls():
    env = dict(os.environ, PLAYPEN_TRACE_PLUGINS="1")
    proc = subprocess.run([sys.executable, "-m", "playpen", "list", "learners"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0
    assert "playpen_register_commands [hook]" in proc.stderr
    assert "finish playpen_register_commands" in proc.stderr


def test_plugin_backends_are_injected_into_clemcore():
    from clemcore.backends import BackendRegistry

    from playpen.clemcore_bridge import install_plugin_backends

    assert install_plugin_backends()["playpen_qlora"] == "playpen_tune.backend:QLoRABackend"
    registry = BackendRegistry.from_packaged_and_cwd_files()
    assert registry.is_supported("playpen_qlora")
    assert registry.is_supported("huggingface_local")  # clemcore's own still there
    backend = registry.get_backend_for("playpen_qlora")
    assert type(backend).__name__ == "QLoRABackend"


def test_unknown_learner_lists_installed(playpen):
    result = playpen("learn", "-l", "nope", "-m", "tiny")
    assert result.code == 2
    assert "unknown learner 'nope'" in result.err and "sft_qlora" in result.err
    assert "Traceback" not in result.err


def test_unknown_model(playpen, workdir):
    result = playpen("learn", "-l", "sft_qlora", "-m", "no-such-model", "--dataset", "x.json")
    assert result.code == 2 and "unknown model 'no-such-model'" in result.err


def test_unknown_field_suggests_closest(playpen, workdir):
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--learning_rat", "1e-4")
    assert result.code == 2
    assert "unknown config field 'learning_rat'" in result.err and "did you mean 'learning_rate'" in result.err


def test_bad_value_type(playpen, workdir):
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--max_steps", "ten")
    assert result.code == 2 and "--max_steps expects a int value, got 'ten'" in result.err


def test_learner_help_lists_config_fields(playpen):
    result = playpen("learn", "-l", "sft_qlora", "--help")
    assert result.code == 0
    assert "--lora_r (int, default 16)" in result.out and "--assistant_only_loss" in result.out


def test_overrides_parse_types_lists_and_flags():
    values = cfg.parse_overrides(SFTQLoRAConfig, [
        "--dataset", "a.json", "--dataset=b.jsonl", "--learning_rate", "1e-4", "--packing",
        "--outcomes", "success,failure", "--save_total_limit", "none"])
    config = cfg.build_config(SFTQLoRAConfig, {"learning_rate": 3e-4, "lora_r": 8}, values)
    assert config.dataset == ["a.json", "b.jsonl"]
    assert config.learning_rate == 1e-4  # CLI wins over YAML
    assert config.lora_r == 8  # YAML applies where the CLI is silent
    assert config.packing is True
    assert config.outcomes == ["success", "failure"]
    assert config.save_total_limit is None


@pytest.mark.parametrize("values, message", [
    ({"per_device_train_batch_size": "0"}, "--per_device_train_batch_size must be > 0"),
    ({"max_steps": "-5"}, "--max_steps must be > 0"),
    ({"packing": "maybe"}, "--packing expects a bool value"),
    ({"outcomes": "won"}, "--outcomes accepts success, failure, aborted"),
])
def test_bad_values_are_user_errors(values, message):
    with pytest.raises(PlaypenError, match=message):
        cfg.build_config(SFTQLoRAConfig, {}, values)


def test_every_config_field_has_help():
    for field in dataclasses.fields(SFTQLoRAConfig):
        assert field.metadata.get("help"), field.name


def test_custom_learner_package_installs_and_runs(tmp_path, evaluation_files):
    """pip-installs examples/custom_learner into a target dir and drives it through the real CLI."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(REPO / "examples" / "custom_learner")], check=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(target), os.environ.get("PYTHONPATH")) if p))

    def run(*argv):
        return subprocess.run([sys.executable, "-m", "playpen", *argv], env=env, cwd=tmp_path,
                              capture_output=True, text=True)

    listing = run("list", "learners")
    assert "wordcount" in listing.stdout and "playpen-wordcount 0.1.0" in listing.stdout
    data = tmp_path / "chats.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in json.loads(evaluation_files["sft"].read_text())[:20]))
    model_dir = tmp_path / "somemodel"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    result = run("learn", "-l", "wordcount", "-m", str(model_dir), "--dataset", str(data), "--top_k", "2")
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "models" / "somemodel-wordcount" / "wordcount.json").read_text())
    assert set(written["top"]) == {"user", "assistant"}
    assert all(len(words) == 2 for words in written["top"].values())
    assert "examples: 20" in result.stdout


TRAINER_FILE = '''
import json
from playpen import BasePlayPen

class RecordingTrainer(BasePlayPen):
    def learn(self, game_registry):
        with open("trainer_ran.json", "w") as handle:
            json.dump({"learner": self.learner.name, "teacher": self.teacher.name if self.teacher else None,
                       "max_tokens": self.learner.max_tokens, "games": len(game_registry)}, handle)
'''


def test_run_executes_an_upstream_style_trainer_file(playpen, workdir):
    (workdir / "my_trainer.py").write_text(TRAINER_FILE)
    result = playpen("run", "my_trainer.py", "-l", "tiny", "-t", "tiny-bnb-4bit", "-L", "17")
    assert result.code == 0, result
    ran = json.loads((workdir / "trainer_ran.json").read_text())
    assert ran == {"learner": "tiny", "teacher": "tiny-bnb-4bit", "max_tokens": 17, "games": 0}


def test_run_without_a_trainer_class_is_a_user_error(playpen, workdir):
    (workdir / "empty.py").write_text("x = 1\n")
    result = playpen("run", "empty.py", "-l", "tiny")
    assert result.code == 2 and "no BasePlaypenTrainer (or BasePlayPen) subclass in empty.py" in result.err


# --- broken third-party packages, selectors, abbreviations, trainer files -------------------------

def fake_site(root: Path, dist: str, entry_points: str, modules: dict[str, str]) -> Path:
    """A directory for PYTHONPATH holding distribution ``dist`` 0.1 (dist-info only) and ``modules``."""
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    for name, code in modules.items():
        (root / f"{name}.py").write_text(code)
    return root


def run_with_site(site: Path, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, "-m", "playpen", *argv], env=env, cwd=site,
                          capture_output=True, text=True)


def test_a_broken_plugin_is_skipped_with_one_warning(tmp_path):
    site = fake_site(tmp_path, "fakeplugins", "[playpen]\nbrokenplug = brokenplug_mod\n"
                     "badhooks = badhooks_mod\ngoodplug = goodplug_mod\n", {
        "brokenplug_mod": "import no_such_module_xyz\n",
        "badhooks_mod": "from playpen.api import hookimpl\n\n@hookimpl\n"
                        "def playpen_register_eval_suites(no_such_argument):\n    return []\n",
        "goodplug_mod": "from playpen.api import hookimpl\n\n@hookimpl\n"
                        "def playpen_register_eval_suites():\n    return []\n"})
    help_run = run_with_site(site, "--help")
    assert help_run.returncode == 0, help_run.stderr
    assert "usage: playpen" in help_run.stdout
    warnings = help_run.stderr.splitlines()
    assert ("warning: plugin brokenplug (fakeplugins 0.1) cannot be loaded: ModuleNotFoundError: "
            "No module named 'no_such_module_xyz'; skipped") in warnings
    assert any(line.startswith("warning: plugin badhooks (fakeplugins 0.1) cannot be loaded: "
                               "PluginValidationError") for line in warnings)
    assert len(warnings) == 2

    listing = run_with_site(site, "list", "plugins")
    assert listing.returncode == 0, listing.stderr
    assert "goodplug  [fakeplugins 0.1]" in listing.stdout
    assert "playpen_tune  [playpen-tune 0.1.0]" in listing.stdout
    assert "brokenplug" not in listing.stdout and "badhooks" not in listing.stdout
    assert run_with_site(site, "list", "learners").returncode == 0  # no half-registered hook left


OWN_HOOKS_PLUGIN = """
from playpen.api import hookimpl, hookspec, plugin_manager


class Specs:
    @hookspec
    def greeter_greetings(self):
        \"\"\"Greetings this plugin prints.\"\"\"


@hookimpl
def playpen_add_hookspecs(plugin_manager):
    plugin_manager.add_hookspecs(Specs)


@hookimpl
def playpen_register_commands(subparsers):
    def greet(args):
        print("greetings: " + ", ".join(sorted(g for gs in plugin_manager().hook.greeter_greetings() for g in gs)))

    subparsers.add_parser("greet").set_defaults(handler=greet)
"""


def test_a_plugin_declares_and_calls_its_own_hooks_checked_against_their_spec(tmp_path):
    """``playpen_add_hookspecs``: a plugin's own hook is called by that plugin; an implementation that does not
    match its spec is skipped with a warning, even when its plugin comes first, and the declaring plugin stays."""
    site = fake_site(tmp_path, "ownhooks", "[playpen]\nbadgreeting = badgreeting_mod\ngreeter = greeter_mod\n"
                     "hello = hello_mod\n", {
        "badgreeting_mod": "from playpen.api import hookimpl\n\n@hookimpl\n"
                           "def greeter_greetings(no_such_argument):\n    return ['bad']\n",
        "greeter_mod": OWN_HOOKS_PLUGIN,
        "hello_mod": "from playpen.api import hookimpl\n\n@hookimpl\ndef greeter_greetings():\n    return ['hello']\n"})
    run = run_with_site(site, "greet")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "greetings: hello"
    [warning] = run.stderr.splitlines()
    assert warning.startswith("warning: plugin badgreeting (ownhooks 0.1) cannot be loaded: PluginValidationError")
    listing = run_with_site(site, "list", "plugins").stdout
    assert "greeter  [ownhooks 0.1]" in listing and "hooks: greeter_greetings" in listing


def test_a_hook_nobody_declares_is_a_warning_not_silence(tmp_path):
    """``playpen_register_learners`` is gone (learners are entry points): a plugin still implementing it is told."""
    site = fake_site(tmp_path, "oldhooks", "[playpen]\noldlearners = oldlearners_mod\n", {
        "oldlearners_mod": "from playpen.api import hookimpl\n\n@hookimpl\n"
                           "def playpen_register_learners():\n    return {'old': 'oldlearners_mod:Old'}\n"})
    listing = run_with_site(site, "list", "learners")
    assert listing.returncode == 0, listing.stderr
    assert listing.stderr.splitlines() == [
        "warning: plugin oldlearners implements playpen_register_learners, a hook that neither playpen nor a plugin "
        "declares, so it is never called; see playpen/hookspecs.py (learners are published as 'playpen.learners' "
        "entry points)"]
    assert " old " not in listing.stdout and "sft_qlora" in listing.stdout


def test_every_hookspec_of_the_host_is_called_by_the_host():
    """A hook the host declares is one the host calls (a plugin's own hooks are declared by that plugin)."""
    import re

    from playpen import hookspecs

    declared = {name for name in dir(hookspecs) if name.startswith("playpen_")}
    host_code = "\n".join(path.read_text() for path in (REPO / "playpen").rglob("*.py") if path.name != "hookspecs.py")
    called = set(re.findall(r"\.hook\.(playpen_\w+)", host_code))
    assert declared and declared <= called, declared - called
    assert "playpen_register_learners" not in declared  # learners: entry points only


def test_a_broken_learner_is_listed_and_reported_on_use(tmp_path):
    site = fake_site(tmp_path, "fakelearners", "[playpen.learners]\nbrokenlearner = brokenlearner_mod:Thing\n",
                     {"brokenlearner_mod": "import no_such_module_xyz\n"})
    listing = run_with_site(site, "list", "learners")
    assert listing.returncode == 0, listing.stderr
    [line] = [line for line in listing.stdout.splitlines() if "brokenlearner" in line]
    assert "(cannot be imported: ModuleNotFoundError: No module named 'no_such_module_xyz')" in line
    assert "[fakelearners 0.1]" in line
    assert "sft_qlora" in listing.stdout and "dpo_qlora" in listing.stdout

    learn = run_with_site(site, "learn", "-l", "brokenlearner", "-m", "tiny")
    assert learn.returncode == 2
    assert "error: learner 'brokenlearner'" in learn.stderr and "no_such_module_xyz" in learn.stderr
    assert "Traceback" not in learn.stderr


ADAPTER_LIKE_LEARNER = """
import json
from dataclasses import dataclass
from playpen import Learner, LearnerResult

@dataclass
class Config:
    entry: bool = False

class AdapterLikeLearner(Learner):
    \"\"\"Writes the files of a LoRA adapter without being a playpen QLoRA learner.\"\"\"
    config_class = Config

    def learn(self, request):
        out = request.output_dir
        out.mkdir(parents=True)
        (out / "adapter_model.safetensors").write_bytes(b"not a playpen adapter")
        base = request.model["huggingface_id"]
        (out / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base}))
        (out / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
        entry = {"model_name": request.name, "backend": "my_backend", "trained_by": request.learner}
        return LearnerResult(output_dir=out, adapter_dir=out, registry_entry=entry if request.config.entry else None)
"""


def test_only_the_registry_entry_a_learner_returns_is_registered(tmp_path):
    """A third-party learner's adapter-like output is not registered by the built-in plugin; the entry the
    learner builds itself is upserted by the host, unchanged."""
    site = fake_site(tmp_path, "adapterlike", "[playpen.learners]\nadapterlike = adapterlike_mod:AdapterLikeLearner\n",
                     {"adapterlike_mod": ADAPTER_LIKE_LEARNER})
    (site / "somemodel").mkdir()
    (site / "somemodel" / "config.json").write_text("{}")
    quiet = run_with_site(site, "learn", "-l", "adapterlike", "-m", "somemodel", "--name", "quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert (site / "models" / "quiet" / "adapter_model.safetensors").is_file()
    assert not (site / "model_registry.json").exists() and "model registry" not in quiet.stdout

    entry = run_with_site(site, "learn", "-l", "adapterlike", "-m", "somemodel", "--name", "loud", "--entry", "true")
    assert entry.returncode == 0, entry.stderr
    assert json.loads((site / "model_registry.json").read_text()) == [
        {"model_name": "loud", "backend": "my_backend", "trained_by": "adapterlike"}]
    assert "model registry: added 'loud'" in entry.stdout


@pytest.mark.parametrize("selector", ["nosuch", '{"main_game": "nosuch"}'])
def test_unmatched_game_selector_lists_known_games(playpen, tmp_path, monkeypatch, selector):
    from playpen_tune.games import DEMO_GAME_NAME, write_game_registry

    monkeypatch.chdir(tmp_path)
    write_game_registry(tmp_path)
    result = playpen("list", "games", "-s", selector)
    assert result.code == 2, result
    assert f"known games: {DEMO_GAME_NAME}" in result.err and "Traceback" not in result.err
    assert DEMO_GAME_NAME in playpen("list", "games", "-s", DEMO_GAME_NAME).out


def test_long_options_are_not_abbreviated(playpen):
    from playpen.cli import build_parser

    args, rest = build_parser().parse_known_args(
        ["learn", "-l", "sft_qlora", "--name", "mine", "--mo", "3", "--over"])
    assert (args.name, args.model, args.overwrite) == ("mine", None, False)
    assert rest == ["--mo", "3", "--over"]  # left for the learner's fields
    result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--mo", "3")
    assert result.code == 2 and "unknown config field 'mo'" in result.err


def _write_trainer(tmp_path: Path, source: str) -> str:
    path = tmp_path / "trainer.py"
    path.write_text("from playpen import BasePlayPen\n" + textwrap.dedent(source))
    return str(path)


def test_run_uses_the_one_concrete_trainer_defined_in_the_file(tmp_path, monkeypatch):
    from playpen.trainer_file import load_trainer_class

    (tmp_path / "shared_trainers.py").write_text(
        "from playpen import BasePlayPen\n\nclass AAAImported(BasePlayPen):\n"
        "    def learn(self, game_registry):\n        pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _write_trainer(tmp_path, """
        from shared_trainers import AAAImported

        class AbstractTrainer(BasePlayPen):
            pass

        class MyTrainer(AbstractTrainer):
            def learn(self, game_registry):
                pass
    """)
    assert load_trainer_class(path).__name__ == "MyTrainer"


@pytest.mark.parametrize("source, message", [
    ("class A(BasePlayPen):\n    def learn(self, g): pass\nclass B(A): pass\n",
     "defines 2 trainer classes (A, B); keep exactly one"),
    ("class A(BasePlayPen:\n", "trainer.py cannot be imported: SyntaxError"),
    ("import no_such_module_xyz\n", "trainer.py cannot be imported: ModuleNotFoundError"),
])
def test_bad_trainer_files_are_user_errors(playpen, tmp_path, source, message):
    result = playpen("run", _write_trainer(tmp_path, source), "-l", "tiny")
    assert result.code == 2 and message in result.err, result
    assert "Traceback" not in result.err


# the legacy tuning.py keys and the fields they set (written out here, not imported from the translator)
LEGACY_NAMES = {"max_seq_length.length": "max_length", "low_rank_matrice.size": "lora_r",
                "influence.rate": "lora_alpha", "dropout.rate": "lora_dropout",
                "training.learning_rate": "learning_rate", "training.batch_size": "per_device_train_batch_size",
                "training.grad_acc_steps": "gradient_accumulation_steps", "training.max_training_steps": "max_steps",
                "training.warmup_steps": "warmup_steps", "sft_dataset.name": "dataset"}
# legacy keys that only describe the run (the model comes from -m; SFT has no beta)
LEGACY_INFORMATIONAL = {"tuning.type", "base_model.name", "sft_model.name", "preference_dataset.name", "training.beta"}


def _leaves(raw: dict) -> dict:
    """``{"section.key": value}`` for nested legacy sections, ``{key: value}`` for flat keys."""
    return {f"{key}.{sub}" if isinstance(value, dict) else key: leaf
            for key, value in raw.items()
            for sub, leaf in (value.items() if isinstance(value, dict) else [(None, value)])}


@pytest.mark.parametrize("learner, file", [("sft_qlora", "sft.yaml"), ("sft_qlora", "legacy_sft.yaml"),
                                           ("dpo_qlora", "dpo.yaml")])
def test_shipped_example_configs_build(learner, file):
    """examples/configs/*.yaml stay valid for the learner they are written for (read as `-c` reads them):
    every key lands in the built config with its value (legacy keys under their new names), and a
    key the learner does not know is refused."""
    from playpen.learners import get_learner

    _, learner_cls = get_learner(learner)
    raw = cfg.read_yaml(REPO / "examples" / "configs" / file)
    values, _ = learner_cls.translate_config(raw)
    config = cfg.build_config(learner_cls.config_class, values)
    leaves = _leaves(raw)
    assert leaves
    for key, value in leaves.items():
        if file.startswith("legacy") and key in LEGACY_INFORMATIONAL:
            continue
        field = LEGACY_NAMES[key] if file.startswith("legacy") else key
        built = getattr(config, field)
        if field == "dataset":
            assert [str(source) for source in built] == (value if isinstance(value, list) else [value]), key
        elif isinstance(built, float):
            assert built == pytest.approx(float(value)), key
        else:
            assert built == value, key

    typo = ({**raw, "training": {**raw["training"], "batchsize": 4}} if file.startswith("legacy")
            else {**raw, "lora_rank": 8})
    with pytest.raises(PlaypenError, match="unknown (legacy )?config (key|field) '(training.batchsize|lora_rank)'"):
        cfg.build_config(learner_cls.config_class, learner_cls.translate_config(typo)[0])


def test_config_fields_may_declare_short_aliases():
    from dataclasses import dataclass, field

    @dataclass
    class Aliased:
        games: list[str] = field(default_factory=list, metadata={"help": "games", "aliases": ["-g"]})
        partner: str | None = field(default=None, metadata={"aliases": ["-t"]})
        quick: bool = field(default=False, metadata={"aliases": ["-q"]})

    values = cfg.parse_overrides(Aliased, ["-g", "a", "-q", "--games", "b", "-t", "programmatic"])
    config = cfg.build_config(Aliased, {}, values)
    assert config.games == ["a", "b"] and config.partner == "programmatic" and config.quick is True
    with pytest.raises(PlaypenError, match="unexpected argument '-x'; .* short options of this learner: -g, -t, -q"):
        cfg.parse_overrides(Aliased, ["-x", "1"])

    for alias in ("-l", "-m", "-c", "-h", "-v"):
        @dataclass
        class Colliding:
            model_path: str = field(default="", metadata={"aliases": [alias]})

        with pytest.raises(PlaypenError, match=f"declares the alias {alias}, which playpen learn uses itself"):
            cfg.parse_overrides(Colliding, [])


def test_host_learn_flags_are_the_learn_parsers_short_options():
    """The aliases refused are exactly the short flags of 'playpen learn' (kept in step with playpen/cli.py)."""
    from playpen.cli import build_parser

    parser = build_parser()
    learn = next(action for action in parser._subparsers._group_actions[0].choices.values()
                 if action.prog.endswith(" learn"))
    shorts = {option for action in learn._actions for option in action.option_strings
              if len(option) == 2 and option[0] == "-" and option[1] != "-"}
    assert shorts == set(cfg.HOST_LEARN_FLAGS)


def test_learner_help_shows_aliases(playpen):
    result = playpen("learn", "-l", "grpo_qlora", "--help")
    assert result.code == 0
    assert "  -g, --games (" in result.out and "  -t, --partner (" in result.out


def help_groups(text: str) -> dict[str, list[str]]:
    """``{group title: [option names]}`` of ``playpen learn -l X --help``: a title is an unindented line ending
    in ':', an option a line '  -x, --name (...' or '  --name (...' below it."""
    groups: dict[str, list[str]] = {}
    title = None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            title = line[:-1]
            groups[title] = []
        elif title is not None and line.startswith("  -") and " (" in line:
            groups[title].append(line.split(" (")[0].split(", ")[-1].strip().removeprefix("--"))
    return groups


def test_grpo_help_shows_its_groups_and_no_dataset_fields(playpen):
    """grpo_qlora learns from play: its options are the games, policy and training groups and its own, and
    none of the dataset group that the offline learners read."""
    from playpen_tune.config import DatasetConfig, GamesConfig, GRPOQLoRAConfig, PolicyConfig, TrainingConfig

    def names(group: type) -> list[str]:
        return [f.name for f in dataclasses.fields(group)]

    result = playpen("learn", "-l", "grpo_qlora", "--help")
    assert result.code == 0
    groups = help_groups(result.out)
    assert list(groups) == ["grpo_qlora", "games", "policy", "training"]
    assert groups["games"] == names(GamesConfig) and groups["policy"] == names(PolicyConfig)
    assert groups["training"] == names(TrainingConfig)  # the GRPO defaults of training fields stay in training
    assert groups["grpo_qlora"] == ["beta", "use_vllm", "vllm_server_base_url", "vllm_python", "vllm_quantization",
                                    "vllm_args", "vllm_server_timeout", "vllm_importance_sampling_correction"]
    listed = {name for options in groups.values() for name in options}
    assert listed == set(names(GRPOQLoRAConfig))
    for name in ("dataset", "packing", "eval_fraction", "eval_dataset", "roles", "max_length", "group_by_length"):
        assert name not in listed and f"--{name} (" not in result.out
    assert not (set(names(DatasetConfig)) - set(names(GamesConfig))) & listed
    assert "  --learning_rate (float, default 1e-05)" in result.out  # GRPO's default, in the training group


def test_sft_and_dpo_help_show_dataset_groups_and_no_games_fields(playpen):
    from playpen_tune.config import GamesConfig

    games_only = ({f.name for f in dataclasses.fields(GamesConfig)}
                  - {f.name for f in dataclasses.fields(SFTQLoRAConfig)})
    assert {"partner", "player", "num_generations", "reward", "eval_split"} <= games_only
    for learner in ("sft_qlora", "dpo_qlora"):
        result = playpen("learn", "-l", learner, "--help")
        assert result.code == 0
        groups = help_groups(result.out)
        assert list(groups) == [learner, "dataset", "policy", "training"], learner
        assert "dataset" in groups["dataset"] and "max_length" in groups["dataset"]
        assert not games_only & {name for options in groups.values() for name in options}, learner
        assert "-g, --games" not in result.out and "-t, --partner" not in result.out
    assert "packing" in help_groups(playpen("learn", "-l", "sft_qlora", "--help").out)["sft_qlora"]
    dpo = playpen("learn", "-l", "dpo_qlora", "--help").out
    assert "beta" in help_groups(dpo)["dpo_qlora"] and "  --learning_rate (float, default 5e-05)" in dpo


@pytest.mark.parametrize("learner, needed, option, yaml_key", [
    ("grpo_qlora", ["-g", "wordecho"], "--dataset", "packing"),
    ("sft_qlora", ["--dataset", "x.json"], "--partner", "num_generations")])
def test_a_field_of_another_learners_group_is_an_unknown_field_naming_the_learner(playpen, tmp_path, learner, needed,
                                                                                  option, yaml_key):
    command = playpen("learn", "-l", learner, "-m", "tiny", *needed, option, "x")
    assert command.code == 2 and "Traceback" not in command.err
    assert (f"error: unknown config field '{option[2:]}' on the command line; {learner} has no such field "
            f"({learner}'s fields: playpen learn -l {learner} --help)") in command.err
    config = tmp_path / "config.yaml"
    config.write_text(f"{yaml_key}: true\n")
    from_file = playpen("learn", "-l", learner, "-m", "tiny", "-c", config, *needed)
    assert from_file.code == 2
    assert (f"error: unknown config field '{yaml_key}' in the config file; {learner} has no such field "
            f"({learner}'s fields: playpen learn -l {learner} --help)") in from_file.err
