"""The loop end to end: learn -> registry entry -> eval with baseline (clemcore scores), the
playpen_qlora backend, the `clem run` shim, resume, failed games and missing games."""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from playpen_tune.games import DEMO_SPLIT_FILE
from tests.conftest import snapshot

BASE, TUNED = "tiny-base", "tiny-base-sft_qlora"


@pytest.fixture(scope="module")
def quickstart_dir(tmp_path_factory) -> Iterator[Path]:
    """One real quickstart run (tiny model, wordecho, SFT, eval with baseline), shared by the tests:
    README's command, ``playpen quickstart DIR``, through the CLI's entry point (in-process).

    Read only: a test that changes files there works on its own copy (see ``quickstart_copy``), so
    results do not depend on the order the tests run in.
    """
    from playpen.cli import main

    directory = tmp_path_factory.mktemp("qs") / "run"
    cwd = os.getcwd()
    try:
        main(["quickstart", str(directory)])
    finally:
        os.chdir(cwd)
    before = snapshot(directory)
    yield directory
    assert snapshot(directory) == before, "a test changed the shared quickstart directory; give it quickstart_copy"


@pytest.fixture
def quickstart_copy(quickstart_dir, tmp_path) -> Path:
    """A copy of the quickstart directory for a test that writes there (absolute paths in its
    registry point at the original's adapter, which is only read)."""
    copy = tmp_path / "run"
    shutil.copytree(quickstart_dir, copy, symlinks=True)
    return copy


@pytest.mark.slow
def test_quickstart_tuned_beats_base_on_heldout(quickstart_dir):
    base = json.loads((quickstart_dir / "eval" / f"{BASE}.val.json").read_text())
    tuned = json.loads((quickstart_dir / "eval" / f"{TUNED}.val.json").read_text())
    assert tuned["clemscore"] > base["clemscore"]
    assert tuned["games"]["wordecho"]["% played"] > base["games"]["wordecho"]["% played"]
    assert base["failed_games"] == {} and tuned["failed_games"] == {}
    # the numbers are clemcore's: compare with its own results table
    import pandas as pd

    table = pd.read_csv(quickstart_dir / "eval" / "results.csv", index_col=0)
    assert table.loc[TUNED, "-, clemscore"] == pytest.approx(tuned["clemscore"])
    assert table.loc[TUNED, "wordecho, % Played"] == pytest.approx(tuned["games"]["wordecho"]["% played"])
    heldout = quickstart_dir / "eval" / "clem" / TUNED / "wordecho" / "heldout"
    assert len(list(heldout.glob("instance_*/scores.json"))) == 12


@pytest.mark.slow
def test_registry_entry_written_after_learn(quickstart_dir):
    entries = json.loads((quickstart_dir / "model_registry.json").read_text())
    assert [e["model_name"] for e in entries] == [BASE, TUNED]
    base = entries[0]
    assert entries[1] == {
        "model_name": TUNED,
        "backend": "playpen_qlora",
        "huggingface_id": base["huggingface_id"],
        "release_date": base["release_date"],
        "open_weight": True,
        "parameters": base["parameters"],
        "languages": ["en"],
        "context_size": "1k",
        "license": base["license"],
        "base_model": BASE,
        "model_config": {
            "peft_model": str(quickstart_dir / "models" / TUNED),
            "quantization": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
                             "bnb_4bit_use_double_quant": True, "bnb_4bit_compute_dtype": "float32"},
            "premade_chat_template": True,
            "eos_to_cull": "(?s)<\\|eot_id\\|>.*",
            "padding_side": "left",
        },
    }


def _expected_cells(base: dict, tuned: dict) -> dict[str, tuple[float, float, float]]:
    """``{row: (base, tuned, tuned - base)}`` from the two val.json documents."""
    games = {game: (base["games"][game]["score"], tuned["games"][game]["score"]) for game in base["games"]}
    games.update({key: (base[key], tuned[key]) for key in ("clemscore", "statscore") if base[key] is not None})
    return {row: (b, t, t - b) for row, (b, t) in games.items()}


@pytest.mark.slow
def test_comparison_files(quickstart_dir):
    base = json.loads((quickstart_dir / "eval" / f"{BASE}.val.json").read_text())
    tuned = json.loads((quickstart_dir / "eval" / f"{TUNED}.val.json").read_text())
    expected = _expected_cells(base, tuned)
    assert set(expected) == {"wordecho", "clemscore"} and expected["wordecho"][2] > 0

    markdown = (quickstart_dir / "eval" / "comparison.md").read_text()
    assert f"| game | {BASE} (base) | {TUNED} (tuned) | delta |" in markdown
    md_rows = {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines()[2:] if line.startswith("| "))}
    page = (quickstart_dir / "eval" / "comparison.html").read_text()
    html_rows = {cells[0]: cells[1:] for cells in (
        [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", row)] for row in re.findall(r"<tr>(.*?)</tr>", page))
        if cells}
    for rows in (md_rows, html_rows):
        assert set(rows) == set(expected) | {"statscore"}  # statscore: '-' without static games
        assert rows["statscore"] == ["-", "-", "-"]
        for row, (b, t, delta) in expected.items():
            assert [float(cell) for cell in rows[row]] == pytest.approx([b, t, delta], abs=0.006), row

    # the chart: base and tuned side by side, drawn from the val.json numbers, at the size of one game's chart
    from playpen.comparison import render_chart
    from playpen.evaluation import ModelEvaluation
    from tests.test_comparison_chart import png_size

    figure, drawn = render_chart(ModelEvaluation.from_json(base), ModelEvaluation.from_json(tuned))
    assert png_size(quickstart_dir / "eval" / "comparison.png") == tuple(figure.get_size_inches() * 100)
    assert drawn["% played"] == {"labels": ["wordecho"], "base": [0.0], "tuned": [100.0]}
    assert drawn["quality score"] == {"labels": ["wordecho"], "base": [None], "tuned": [100.0]}  # no episode played
    assert drawn["suite score"] == {"labels": ["clemscore"], "base": [0.0], "tuned": [100.0]}


@pytest.mark.slow
def test_val_json_and_comparison_say_how_each_side_was_played(quickstart_dir):
    base = json.loads((quickstart_dir / "eval" / f"{BASE}.val.json").read_text())
    tuned = json.loads((quickstart_dir / "eval" / f"{TUNED}.val.json").read_text())
    generation = {"temperature": 0.0, "max_tokens": 8}
    assert base["model_settings"] == {"backend": "huggingface_local", "weights": str(quickstart_dir / "models" / BASE),
                                      "quantization": None, "adapter": None, "generation": generation,
                                      "engine": "hf"}
    assert tuned["model_settings"] == {
        "backend": "playpen_qlora", "weights": str(quickstart_dir / "models" / BASE), "generation": generation,
        "engine": "hf",
        "quantization": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                         "bnb_4bit_compute_dtype": "float32"}, "adapter": str(quickstart_dir / "models" / TUNED)}
    markdown = (quickstart_dir / "eval" / "comparison.md").read_text()
    assert (f"- base {BASE}: huggingface_local, unquantized (the checkpoint's dtype); temperature 0.0, max_tokens 8\n"
            f"- tuned {TUNED}: playpen_qlora, 4-bit nf4 (double quant), compute float32, adapter "
            f"{quickstart_dir / 'models' / TUNED}; temperature 0.0, max_tokens 8\n") in markdown
    assert "loaded with different quantization" in markdown and "--baseline_4bit" in markdown


@pytest.mark.slow
def test_baseline_4bit_plays_the_base_on_the_adapters_4bit_base(quickstart_copy, monkeypatch, playpen):
    monkeypatch.chdir(quickstart_copy)
    assert playpen("register", "tuned-again", "--base", BASE, "--adapter", quickstart_copy / "models" / TUNED).code == 0
    game = ["-g", "wordecho", "--split_source", DEMO_SPLIT_FILE, "-L", "8"]
    for args, message in {("--baseline_4bit",): "pass --baseline BASE too",
                          ("--baseline", "tuned-again",
                           "--baseline_4bit"): "'tuned-again' is itself a tuned model"}.items():
        result = playpen("eval", TUNED, *args, *game, "-r", "refused")
        assert result.code == 2 and message in result.err, result
    result = playpen("eval", BASE, "--baseline", "tuned-again", "--baseline_4bit", *game, "-r", "refused")
    assert result.code == 2 and f"'{BASE}' is not a tuned model" in result.err, result
    assert not (quickstart_copy / "refused").exists()

    result = playpen("eval", TUNED, "--baseline", BASE, "--baseline_4bit", *game, "-r", "like-for-like")
    assert result.code == 0, result
    four_bit = json.loads((quickstart_copy / "like-for-like" / f"{BASE}@4bit.val.json").read_text())
    tuned = json.loads((quickstart_copy / "like-for-like" / f"{TUNED}.val.json").read_text())
    assert four_bit["model_settings"] == {**tuned["model_settings"], "adapter": None}
    assert four_bit["games"]["wordecho"]["episodes"] == 12
    markdown = (quickstart_copy / "like-for-like" / "comparison.md").read_text()
    assert f"| game | {BASE}@4bit (base) | {TUNED} (tuned) | delta |" in markdown
    assert "different quantization" not in markdown

    from playpen.evaluation import four_bit_baseline
    from playpen.models import find_model
    from playpen_tune.backend import QLoRAModel

    _, spec = four_bit_baseline(find_model(TUNED), find_model(BASE))
    model = QLoRAModel(spec).model  # what played the baseline: the base in 4-bit nf4, no adapter
    q_proj = model.model.layers[0].self_attn.q_proj
    assert type(q_proj).__name__ == "Linear4bit" and q_proj.weight.quant_state.quant_type == "nf4"
    assert not hasattr(model, "peft_config")


@pytest.mark.slow
def test_backend_loads_4bit_base_and_adapter(quickstart_dir, monkeypatch):
    monkeypatch.chdir(quickstart_dir)
    from clemcore.backends import ModelRegistry

    from playpen.clemcore_bridge import install_plugin_backends

    install_plugin_backends()
    from clemcore import backends

    model = backends.load_model(TUNED, {"temperature": 0.0, "max_tokens": 8})
    assert type(model).__name__ == "QLoRAModel"
    q_proj = model.model.base_model.model.model.layers[0].self_attn.q_proj
    assert type(q_proj.base_layer).__name__ == "Linear4bit"
    assert q_proj.base_layer.weight.quant_state.quant_type == "nf4"
    assert "default" in q_proj.lora_A
    spec = ModelRegistry.from_packaged_and_cwd_files().get_first_model_spec_that_unify_with(TUNED)
    assert Path(spec.model_config["peft_model"]) == quickstart_dir / "models" / TUNED
    prompt = ("Word echo game. I say a word, you repeat it. Answer in the form ANSWER: <word>\n"
              "Say the word: apple")
    _, _, text = model.generate_response([{"role": "user", "content": prompt}])
    assert text == "ANSWER: apple"


@pytest.mark.slow
def test_eval_rerun_resumes_played_episodes(quickstart_copy, monkeypatch, playpen):
    quickstart_dir = quickstart_copy  # the rerun rewrites val.json: not in the shared directory
    monkeypatch.chdir(quickstart_dir)
    episodes = sorted((quickstart_dir / "eval" / "clem" / TUNED).rglob("interactions.json"))
    before = {p: p.stat().st_mtime_ns for p in episodes}
    result = playpen("eval", TUNED, "-r", "eval", "-g", "wordecho", "--split_source", DEMO_SPLIT_FILE, "-L", "8")
    assert result.code == 0, result
    assert {p: p.stat().st_mtime_ns for p in episodes} == before  # nothing replayed
    tuned = json.loads((quickstart_dir / "eval" / f"{TUNED}.val.json").read_text())
    assert tuned["games"]["wordecho"]["% played"] == 100.0


@pytest.mark.slow
def test_plain_clem_run_with_installed_shim(quickstart_copy, playpen, monkeypatch):
    quickstart_dir = quickstart_copy  # install-backend and clem run write there: not in the shared directory
    monkeypatch.chdir(quickstart_dir)
    assert playpen("install-backend").code == 0
    assert (quickstart_dir / "playpen_qlora_api.py").is_file()
    clem = Path(sys.executable).with_name("clem")
    run = subprocess.run([str(clem), "run", "-g", "wordecho", "-m", TUNED, "-i", "instances_heldout",
                          "-r", "clem-results", "-l", "8"], cwd=quickstart_dir, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    score = subprocess.run([str(clem), "score", "-g", "wordecho", "-r", "clem-results"], cwd=quickstart_dir,
                           capture_output=True, text=True)
    assert score.returncode == 0, score.stderr[-3000:]
    scores = [json.loads(p.read_text())["episode scores"]
              for p in (quickstart_dir / "clem-results" / TUNED).rglob("scores.json")]
    assert len(scores) == 12 and all(s["Success"] == 1 for s in scores)


# ------------------------------------------------------------------ fast eval paths


SETUP = "def _on_setup(self, **game_instance):"


def add_game_variant(workdir: Path, name: str, setup_prefix: str) -> None:
    """Register the demo game and a copy of it named ``name`` whose setup starts with ``setup_prefix``."""
    from playpen_tune.games import DEMO_GAME_DIR, write_game_registry

    write_game_registry(workdir)
    variant = workdir / "games" / name
    shutil.copytree(DEMO_GAME_DIR, variant)
    spec = json.loads((variant / "clemgame.json").read_text())
    (variant / "clemgame.json").write_text(json.dumps(dict(spec, game_name=name)))
    master = (variant / "master.py").read_text()
    assert SETUP in master
    (variant / "master.py").write_text(master.replace(SETUP, SETUP + "\n        " + setup_prefix, 1))
    entries = json.loads((workdir / "game_registry.json").read_text())
    (workdir / "game_registry.json").write_text(json.dumps(entries + [{"benchmark_path": str(variant)}]))


@pytest.fixture
def game_workdir(workdir) -> Path:
    """The demo game plus 'brokenecho', a copy that raises while setting up any instance."""
    add_game_variant(workdir, "brokenecho", "raise RuntimeError('broken game')")
    return workdir


def test_failed_game_is_listed_never_dropped_or_zero(game_workdir, playpen):
    selector = json.dumps({"benchmark": ["playpen-demo"]})
    result = playpen("eval", "tiny", "--baseline", "tiny-bnb-4bit", "-g", selector, "-i", "instances_heldout",
                     "--all_instances",
                     "-L", "6", "-r", "ev")
    assert result.code == 2 and "some games failed" in result.err
    val = json.loads((game_workdir / "ev" / "tiny.val.json").read_text())
    assert "brokenecho" in val["failed_games"] and "brokenecho" not in val["games"]
    assert val["games"]["wordecho"]["% played"] == 0.0  # the random tiny model never follows the format
    markdown = (game_workdir / "ev" / "comparison.md").read_text()
    assert "| brokenecho | FAILED | FAILED | - |" in markdown
    assert "Failed games (not counted in the scores above)" in markdown
    assert "brokenecho" in result.out and "FAILED" in result.out


@pytest.fixture
def flaky_workdir(workdir) -> Path:
    """The demo game plus 'flakyecho', a copy that raises while setting up odd-numbered instances."""
    add_game_variant(workdir, "flakyecho", "if game_instance['game_id'] % 2: raise RuntimeError('flaky instance')")
    return workdir


@pytest.mark.parametrize("batch_size", ["1", "16"])
def test_partly_failing_game_is_reported_not_averaged(flaky_workdir, playpen, batch_size):
    result = playpen("eval", "tiny", "-g", "flakyecho", "-i", "instances_heldout", "--all_instances", "-L", "6", "-r",
                     "ev",
                     "-b", batch_size)
    assert result.code == 2 and "some games failed" in result.err
    val = json.loads((flaky_workdir / "ev" / "tiny.val.json").read_text())
    assert "flakyecho" not in val["games"]
    heldout = json.loads((flaky_workdir / "games" / "flakyecho" / "in" / "instances_heldout.json").read_text())
    ids = [i["game_id"] for e in heldout["experiments"] for i in e["game_instances"]]
    odd = sum(game_id % 2 for game_id in ids)  # the instances flakyecho raises on
    assert odd and odd < len(ids)
    assert f"{odd} of {len(ids)} episodes were not played and scored" in val["failed_games"]["flakyecho"]
    assert "FAILED" in result.out


def test_resuming_into_episodes_of_other_settings_is_refused(flaky_workdir, playpen):
    args = ["eval", "tiny", "-g", "wordecho", "-i", "instances_heldout", "--all_instances", "-r", "ev"]
    assert playpen(*args, "-L", "6").code == 0
    before = snapshot(flaky_workdir / "ev" / "clem" / "tiny")
    result = playpen(*args, "-L", "7")
    assert result.code == 2 and "played with a different gen_args" in result.err
    assert snapshot(flaky_workdir / "ev" / "clem" / "tiny") == before
    assert playpen(*args, "-L", "6").code == 0  # same settings: resumes (nothing left to play)


@pytest.fixture
def load_counter(monkeypatch) -> list:
    """The player names of every ``clemcore.backends.load_models`` call (the real loader still runs)."""
    from clemcore import backends

    calls, load_models = [], backends.load_models

    def counting_load_models(model_specs, gen_args=None):
        calls.append([spec.model_name for spec in model_specs])
        return load_models(model_specs, gen_args)

    monkeypatch.setattr(backends, "load_models", counting_load_models)
    return calls


def test_each_model_loads_once_for_all_games(workdir, playpen, load_counter):
    add_game_variant(workdir, "echotwo", "pass")
    selector = json.dumps({"benchmark": ["playpen-demo"]})
    result = playpen("eval", "tiny", "--baseline", "tiny-bnb-4bit", "-g", selector, "-i", "instances_heldout",
                     "--all_instances",
                     "-L", "4", "-r", "ev")
    assert result.code == 0, result
    assert load_counter == [["tiny"], ["tiny-bnb-4bit"]]
    for model in ("tiny", "tiny-bnb-4bit"):
        val = json.loads((workdir / "ev" / f"{model}.val.json").read_text())
        assert set(val["games"]) == {"wordecho", "echotwo"} and val["failed_games"] == {}
        for game in ("wordecho", "echotwo"):
            assert len(list((workdir / "ev" / "clem" / model / game / "heldout").glob("instance_*/scores.json"))) == 12
    assert playpen("eval", "tiny", "-g", selector, "-i", "instances_heldout", "--all_instances", "-L", "4", "-r",
                   "ev").code == 0
    assert load_counter == [["tiny"], ["tiny-bnb-4bit"]]  # everything was played: nothing to load


def test_model_that_cannot_load_fails_its_games_not_the_baseline(workdir, playpen):
    from playpen_tune.games import write_game_registry
    from playpen_tune.tiny import registry_entry

    write_game_registry(workdir)
    entries = json.loads((workdir / "model_registry.json").read_text())
    entries.append(registry_entry("ghost", workdir / "no-such-model"))
    (workdir / "model_registry.json").write_text(json.dumps(entries))
    result = playpen("eval", "ghost", "--baseline", "tiny", "-g", "wordecho", "-i", "instances_heldout",
                     "--all_instances",
                     "-L", "4", "-r", "ev")
    assert result.code == 2 and "some games failed" in result.err
    ghost = json.loads((workdir / "ev" / "ghost.val.json").read_text())
    assert ghost["games"] == {} and "could not load ghost" in ghost["failed_games"]["wordecho"]
    tiny = json.loads((workdir / "ev" / "tiny.val.json").read_text())
    assert tiny["failed_games"] == {} and tiny["games"]["wordecho"]["% played"] == 0.0


def test_scores_count_only_the_selected_experiment(workdir, playpen):
    """Episodes of other experiments played into the same -r earlier are not in val.json or results.csv."""
    add_game_variant(workdir, "twoecho", "pass")
    instances_dir = workdir / "games" / "twoecho" / "in"
    heldout = json.loads((instances_dir / "instances_heldout.json").read_text())
    [experiment] = heldout["experiments"]
    halves = [dict(experiment, name=name, game_instances=experiment["game_instances"][i::2])
              for i, name in enumerate(("first", "second"))]
    (instances_dir / "instances_two.json").write_text(json.dumps(dict(heldout, experiments=halves)))
    args = ["eval", "tiny", "-g", "twoecho", "-i", "instances_two", "--all_instances", "-L", "4", "-r", "ev"]
    assert playpen(*args).code == 0
    assert json.loads((workdir / "ev" / "tiny.val.json").read_text())["games"]["twoecho"]["episodes"] == 12
    result = playpen(*args, "-e", "first")
    assert result.code == 0, result
    assert json.loads((workdir / "ev" / "tiny.val.json").read_text())["games"]["twoecho"]["episodes"] == 6
    import pandas as pd

    raw = pd.read_csv(workdir / "ev" / "raw.csv")
    assert set(raw["experiment"]) == {"first"} and raw["episode"].nunique() == 6
    assert len(list((workdir / "ev" / "clem" / "tiny" / "twoecho").glob("*/instance_*/scores.json"))) == 12  # all kept


def test_skip_gameplay_scores_what_is_there_and_fails_what_is_missing(workdir, playpen):
    from playpen_tune.games import write_game_registry

    write_game_registry(workdir)
    args = ["eval", "tiny", "-g", "wordecho", "-i", "instances_heldout", "--all_instances", "-L", "4", "-r", "ev"]
    assert playpen(*args).code == 0
    episodes = sorted((workdir / "ev" / "clem" / "tiny" / "wordecho" / "heldout").glob("instance_*"))
    (episodes[0] / "scores.json").unlink()  # played, not scored: --skip_gameplay scores it
    shutil.rmtree(episodes[1])  # never played: missing
    result = playpen(*args, "--skip_gameplay")
    assert result.code == 2 and "some games failed" in result.err
    assert (episodes[0] / "scores.json").is_file() and not episodes[1].exists()
    val = json.loads((workdir / "ev" / "tiny.val.json").read_text())
    assert val["failed_games"]["wordecho"].startswith("1 of 12 episodes were not played and scored: "
                                                      "gameplay was skipped")


def set_benchmark(workdir: Path, game: str, benchmark: str) -> None:
    spec_file = workdir / "games" / game / "clemgame.json"
    spec_file.write_text(json.dumps(dict(json.loads(spec_file.read_text()), benchmark=[benchmark])))


def test_suite_all_reports_clemscore_and_statscore_from_their_own_games(workdir, playpen):
    """clemscore comes from the benchmark 2.0 games, statscore from the static_1.0 games."""
    add_game_variant(workdir, "clemecho", "pass")
    # the static copy appends an 'x' to every word it asks for: the expert echoes it and fails round one
    add_game_variant(workdir, "staticecho", "self.experiment = dict(self.experiment, "
                     "round_prompt=self.experiment['round_prompt'].replace('$WORD$', '$WORD$x'))")
    set_benchmark(workdir, "clemecho", "2.0")
    set_benchmark(workdir, "staticecho", "static_1.0")
    result = playpen("eval", "mock", "--suite", "all", "-i", "instances_heldout", "--all_instances", "-r", "ev")
    assert result.code == 0, result
    val = json.loads((workdir / "ev" / "mock.val.json").read_text())
    assert val["suites"]["clem"]["games"] == ["clemecho"] and val["suites"]["static"]["games"] == ["staticecho"]
    assert val["games"]["clemecho"]["quality score"] == 100.0 and val["games"]["staticecho"]["% played"] == 100.0
    assert val["games"]["staticecho"]["quality score"] == 0.0
    assert (val["clemscore"], val["statscore"]) == (100.0, 0.0)
    assert "wordecho" not in val["games"]  # benchmark playpen-demo is in neither suite
    # upstream's layout: static_1.0 games under static/, the others under clem/
    assert len(list((workdir / "ev" / "static" / "mock" / "staticecho").rglob("scores.json"))) == 12
    assert len(list((workdir / "ev" / "clem" / "mock" / "clemecho").rglob("scores.json"))) == 12
    static = playpen("eval", "mock", "--suite", "static", "-i", "instances_heldout", "--all_instances", "-r", "ev")
    assert static.code == 0, static
    val = json.loads((workdir / "ev" / "mock.val.json").read_text())
    assert val["statscore"] == 0.0 and val["clemscore"] is None and list(val["games"]) == ["staticecho"]


def test_no_games_is_a_clear_error(workdir, playpen):
    before = snapshot(workdir)
    result = playpen("eval", "tiny")
    assert result.code == 2
    assert "no clemgames found" in result.err and "game_registry.json" in result.err
    assert snapshot(workdir) == before


def test_unknown_game_is_a_clear_error(game_workdir, playpen):
    result = playpen("eval", "tiny", "-g", "nosuchgame")
    assert result.code == 2 and "no game matches 'nosuchgame'" in result.err and "wordecho" in result.err


@pytest.mark.slow
def test_quickstart_command_with_dpo(tmp_path):
    """`playpen quickstart DIR --dpo --sft_steps 100` as a user runs it: SFT, on-policy DPO on top, eval vs base.

    The default 300 SFT steps are the ``quickstart_dir`` fixture's run; here SFT stops at an early checkpoint
    (``--sft_steps``, a quickstart option) to save time, and DPO on top of it must still beat the base."""
    run = subprocess.run([sys.executable, "-m", "playpen", "quickstart", str(tmp_path / "qs"), "--dpo",
                          "--sft_steps", "100"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    sft = json.loads((tmp_path / "qs" / "models" / TUNED / "playpen_run.json").read_text())
    assert sft["metrics"]["global_step"] == 100
    dpo = f"{TUNED}-dpo_qlora"
    manifest = json.loads((tmp_path / "qs" / "models" / dpo / "playpen_run.json").read_text())
    assert manifest["reference"].startswith("frozen copy of the parent adapter")
    assert manifest["parent_adapter"] == str(tmp_path / "qs" / "models" / TUNED)
    assert manifest["data"]["sources"][0]["kind"] == "transcripts" and manifest["data"]["total"] == 48
    assert manifest["metrics"]["final_reward_margins"] > manifest["metrics"]["first_reward_margins"]
    base = json.loads((tmp_path / "qs" / "eval" / f"{BASE}.val.json").read_text())
    tuned = json.loads((tmp_path / "qs" / "eval" / f"{dpo}.val.json").read_text())
    assert tuned["clemscore"] > base["clemscore"]
    assert f"clemscore {BASE} = " in run.stdout


def test_eval_settings_identify_an_adapter_by_its_run_manifest_through_the_plugin(tmp_path):
    """The host asks plugins what identifies a model (``playpen_model_identity``); the built-in plugin answers
    with the hash of the adapter's run manifest, so a retrained adapter is not resumed into old episodes."""
    import hashlib

    from clemcore.backends import ModelSpec

    from playpen.gameplay import _model_settings

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "playpen_run.json").write_text('{"metrics": {"final_loss": 1.0}}')
    entry = {"model_name": "tuned", "backend": "playpen_qlora", "huggingface_id": "base",
             "model_config": {"peft_model": str(adapter)}}
    first = _model_settings(ModelSpec.from_dict(entry))
    assert first["adapter_manifest_sha256"] == hashlib.sha256((adapter / "playpen_run.json").read_bytes()).hexdigest()
    (adapter / "playpen_run.json").write_text('{"metrics": {"final_loss": 0.5}}')
    assert _model_settings(ModelSpec.from_dict(entry))["adapter_manifest_sha256"] != first["adapter_manifest_sha256"]
    assert _model_settings(ModelSpec.from_dict({**entry, "model_config": {}}))["adapter_manifest_sha256"] is None


def test_a_plugin_eval_suite_is_a_choice_selected_scored_and_reported(workdir, playpen):
    """``playpen_register_eval_suites``: the suite is a --suite choice, selects its games, and val.json and the
    summary report its score (clemcore's numbers) under the suite's score name."""
    from playpen import hookimpl
    from playpen.plugins import pm
    from playpen.suites import EvalSuite
    from playpen_tune.games import write_game_registry

    class Plugin:
        @hookimpl
        def playpen_register_eval_suites(self):
            return [EvalSuite("echoes", {"game_name": "wordecho"}, "echoscore", "the demo game")]

    write_game_registry(workdir)
    plugin = Plugin()
    pm.register(plugin)
    try:
        result = playpen("eval", "mock", "--suite", "echoes", "-i", "instances_heldout", "--all_instances", "-r", "ev")
        unknown = playpen("eval", "mock", "--suite", "nosuch", "-r", "ev2")
    finally:
        pm.unregister(plugin)
    assert result.code == 0, result
    val = json.loads((workdir / "ev" / "mock.val.json").read_text())
    assert val["suites"] == {"echoes": {"score": val["echoscore"], "games": ["wordecho"]}}
    assert val["echoscore"] == val["games"]["wordecho"]["score"] > 0 and val["clemscore"] is None
    assert f"echoscore {val['echoscore']:.2f}" in result.out
    assert unknown.code == 2 and "'echoes'" in unknown.err  # argparse lists the plugin's suite among the choices
