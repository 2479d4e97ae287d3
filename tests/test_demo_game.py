"""The demo clemgame ``wordecho`` played through clemcore's own run/score/eval code paths (offline, fast)."""
import importlib.util
import json
import math
import os
from pathlib import Path

import pytest

from playpen.errors import PlaypenError
from playpen_tune.games import DEMO_GAME_DIR, DEMO_GAME_NAME, demo_corpus, play, write_game_registry


def _load_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _instances(name: str) -> dict:
    return _load_json(DEMO_GAME_DIR / "in" / f"{name}.json")


def _episode_dirs(results: Path, model: str) -> list[Path]:
    return sorted(p.parent for p in (results / model / DEMO_GAME_NAME).rglob("interactions.json"))


def _clemscores(results: Path) -> dict:
    from clemcore import clemeval

    table = clemeval.perform_evaluation(str(results), return_dataframe=True)
    return table["-, clemscore"].to_dict()


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    """clemcore reads registries from, and (on first import) opens clembench.log in, the cwd."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def expert_train(tmp_path_factory):
    """The scripted expert (model ``mock``) played on the train instances, scored by clemcore."""
    workdir = tmp_path_factory.mktemp("expert")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        write_game_registry(workdir)
        results = play(["mock"], "results", instances="instances_train")
    return results


# --- the game files -----------------------------------------------------------------------------

def test_game_files_are_a_clemgame():
    from clemcore.clemgame import GameSpec

    [spec] = GameSpec.from_directory(str(DEMO_GAME_DIR))
    assert spec.game_name == DEMO_GAME_NAME and spec.players == 1 and spec.game_file_exists()
    assert "playpen-demo" in spec.benchmark
    train, heldout = _instances("instances_train"), _instances("instances_heldout")
    # clemcore's default file holds both; playpen_tune/demo_game/wordecho/splits.jsonl says which is which
    assert _instances("instances")["experiments"] == train["experiments"] + heldout["experiments"]
    train_pairs = [tuple(i["target_words"]) for e in train["experiments"] for i in e["game_instances"]]
    heldout_pairs = [tuple(i["target_words"]) for e in heldout["experiments"] for i in e["game_instances"]]
    assert 40 <= len(train_pairs) <= 60 and 10 <= len(heldout_pairs) <= 20
    assert not set(train_pairs) & set(heldout_pairs)  # held-out episodes are new
    assert {w for p in heldout_pairs for w in p} <= {w for p in train_pairs for w in p}  # ... of known words
    assert [e["name"] for e in train["experiments"]] != [e["name"] for e in heldout["experiments"]]
    assert "ANSWER: apple" in demo_corpus() and "Say the word: apple" in demo_corpus()


def test_write_game_registry_keeps_other_entries(tmp_path):
    from clemcore.clemgame import GameRegistry

    mine = '[{"benchmark_path": "/elsewhere/clembench",   "note": "mine"}'  # formatted by hand
    (tmp_path / "game_registry.json").write_text(mine + "]\n")
    path = write_game_registry(tmp_path)
    write_game_registry(tmp_path)  # idempotent
    assert _load_json(path) == [{"benchmark_path": "/elsewhere/clembench", "note": "mine"},
                                {"benchmark_path": str(DEMO_GAME_DIR)}]
    assert path.read_text().startswith(mine + ",")  # the user's bytes are kept as they were
    spec = GameRegistry.from_directories_and_cwd_files().get_game_spec(DEMO_GAME_NAME)
    assert Path(spec.game_path) == DEMO_GAME_DIR


def test_play_without_registry_is_a_user_error(tmp_path):
    with pytest.raises(PlaypenError, match="write_game_registry"):
        play(["mock"], tmp_path / "results")


# --- the expert through clemcore ----------------------------------------------------------------

def test_expert_wins_every_train_episode(expert_train):
    n_train = sum(len(e["game_instances"]) for e in _instances("instances_train")["experiments"])
    episodes = _episode_dirs(expert_train, "mock")
    assert len(episodes) == n_train
    for episode in episodes:
        scores = _load_json(episode / "scores.json")["episode scores"]
        assert (scores["Success"], scores["Lose"], scores["Aborted"]) == (1, 0, 0), episode
        assert scores["Main Score"] == 100
        assert (episode / "completed.json").exists()


def test_expert_interactions_are_multi_turn(expert_train):
    episode = expert_train / "mock" / DEMO_GAME_NAME / "train" / "instance_00000"
    interactions = _load_json(episode / "interactions.json")
    words = _load_json(episode / "instance.json")["target_words"]
    assert interactions["players"] == {
        "GM": {"game_role": "Game Master", "model_name": "programmatic"},  # skipped by the data loaders
        "Player 1": {"game_role": "Echoer", "model_name": "mock"},  # learned from
    }
    assert interactions["meta"]["round_count"] == len(interactions["turns"]) == len(words) == 2
    for round_idx, (events, word) in enumerate(zip(interactions["turns"], words, strict=True)):
        assert [(e["from"], e["to"], e["action"]["type"]) for e in events] == [
            ("GM", "Player 1", "send message"), ("Player 1", "GM", "get message"), ("GM", "GM", "correct word")]
        prompt, answer = events[0]["action"]["content"], events[1]["action"]["content"]
        assert prompt.endswith(f"Say the word: {word}")
        assert ("ANSWER: <word>" in prompt) == (round_idx == 0)  # the rules come with the first prompt only
        assert answer == f"ANSWER: {word}"
        assert len(prompt.split()) < 30  # short prompts keep tiny-model training fast
    assert interactions["Request Count"] == [1, 1] and interactions["Violated Request Count"] == [0, 0]


def test_clemeval_gives_the_expert_a_clemscore_of_100(expert_train):
    assert _clemscores(expert_train) == {"mock": 100.0}
    assert (expert_train / "results.csv").exists() and (expert_train / "raw.csv").exists()


def test_expert_wins_heldout_too_with_batchwise_runner(tmp_path):
    write_game_registry(tmp_path)
    results = play(["mock"], tmp_path / "results", instances="instances_heldout", batch_size=4)
    episodes = _episode_dirs(results, "mock")
    assert len(episodes) == len(_instances("instances_heldout")["experiments"][0]["game_instances"])
    assert {e.parent.name for e in episodes} == {"heldout"}
    assert all((e / "completed.json").exists() for e in episodes)
    assert _clemscores(results) == {"mock": 100.0}


# --- wrong answers ------------------------------------------------------------------------------

def _game_module():
    spec = importlib.util.spec_from_file_location("wordecho_master_under_test", DEMO_GAME_DIR / "master.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _play_directly(responses: list[str]):
    """Drive the game master by hand with ``responses``; return (outcome, interactions, episode scores)."""
    from clemcore.backends import CustomResponseModel, ModelSpec
    from clemcore.clemgame import GameInteractionsRecorder, GameSpec

    module = _game_module()
    [game_spec] = GameSpec.from_directory(str(DEMO_GAME_DIR))
    experiment = {k: v for k, v in _instances("instances_train")["experiments"][0].items() if k != "game_instances"}
    instance = {"game_id": 0, "target_words": ["apple", "river"]}
    model = CustomResponseModel(ModelSpec(model_name="mock", backend="_player_programmed"))
    master = module.WordEcho(game_spec, experiment, [model])
    master.setup(**instance)
    recorder = GameInteractionsRecorder(DEMO_GAME_NAME, experiment["name"], 0, "test", {})
    master.register(recorder)
    master.before_game()
    for response in responses:
        done, _ = master.step(response)
        if done:
            break
    scorer = module.WordEchoScorer(DEMO_GAME_NAME, experiment, instance)
    scorer.compute_scores(recorder.interactions)
    return master.state.outcome.value, recorder.interactions, scorer.scores["episode scores"]


def test_parse_answer():
    module = _game_module()
    assert module.parse_answer("  ANSWER: Apple \n") == "apple"
    for bad in ["apple", "ANSWER apple", "answer: apple", "ANSWER: apple pie", "ANSWER: apple.", "ANSWER:"]:
        with pytest.raises(module.ParseError):
            module.parse_answer(bad)
    assert module.expert_answer("rules...\nSay the word: tiger") == "ANSWER: tiger"


def test_right_answers_win():
    outcome, _, scores = _play_directly(["ANSWER: apple", "ANSWER: river"])
    assert outcome == "success" and scores["Success"] == 1 and scores["Main Score"] == 100


def test_wrong_word_loses():
    outcome, interactions, scores = _play_directly(["ANSWER: apple", "ANSWER: lemon", "ANSWER: river"])
    assert outcome == "failure"
    assert len(interactions["turns"]) == 2  # the game ends at the wrong word
    assert interactions["turns"][-1][-1]["action"]["type"] == "wrong word"
    assert (scores["Success"], scores["Lose"], scores["Aborted"]) == (0, 1, 0)
    assert scores["Main Score"] == 50  # one of two words echoed


def test_wrong_format_aborts():
    outcome, interactions, scores = _play_directly(["Sure! The word is apple."])
    assert outcome == "aborted" and len(interactions["turns"]) == 1
    assert (scores["Success"], scores["Lose"], scores["Aborted"]) == (0, 0, 1)
    assert scores["Violated Request Count"] == 1 and math.isnan(scores["Main Score"])


BAD_BACKEND = '''
from clemcore.backends import Backend, Model


class BadEchoModel(Model):
    """wrongecho: right word in round 1, wrong word after; mumbler: never the answer format; crasher: raises."""

    def generate_response(self, messages):
        if self.name == "crasher":
            raise RuntimeError("backend exploded")
        round_idx = sum(m["role"] == "user" for m in messages) - 1
        word = messages[-1]["content"].split()[-1]
        if self.name == "mumbler":
            text = "I think the word is " + word
        else:
            text = "ANSWER: " + (word if round_idx == 0 else "banana")
        return messages, {"response": text}, text


class BadEchoBackend(Backend):

    def get_model_for(self, model_spec):
        return BadEchoModel(model_spec)
'''


def _bad_models_setup(directory: Path):
    write_game_registry(directory)
    (directory / "badecho_api.py").write_text(BAD_BACKEND)  # clemcore loads *_api.py backends from the cwd
    (directory / "model_registry.json").write_text(json.dumps([
        {"model_name": name, "backend": "badecho"} for name in ("wrongecho", "mumbler", "crasher")]))


def test_bad_players_through_clemcore(tmp_path):
    """Non-programmatic models that answer wrongly lose or abort, and clemeval scores them so."""
    _bad_models_setup(tmp_path)
    results = tmp_path / "results"
    play(["wrongecho"], results, instances="instances_heldout")
    play(["mumbler"], results, instances="instances_heldout")

    for episode in _episode_dirs(results, "wrongecho"):
        interactions = _load_json(episode / "interactions.json")
        assert interactions["players"]["Player 1"] == {"game_role": "Echoer", "model_name": "wrongecho"}
        assert len(interactions["turns"]) == 2
        scores = _load_json(episode / "scores.json")["episode scores"]
        assert (scores["Success"], scores["Lose"], scores["Aborted"], scores["Main Score"]) == (0, 1, 0, 50)
    for episode in _episode_dirs(results, "mumbler"):
        scores = _load_json(episode / "scores.json")["episode scores"]
        assert (scores["Success"], scores["Lose"], scores["Aborted"]) == (0, 0, 1)

    clemscores = _clemscores(results)
    assert clemscores["wrongecho"] == 50.0  # 100 % played * quality 50
    # every episode aborted: 0 % played and no quality score, which clemcore turns into a NaN clemscore
    assert math.isnan(clemscores["mumbler"])


def test_play_reports_episodes_that_raised(tmp_path):
    """clemcore logs and skips an episode whose model raises; play() turns that into a PlaypenError."""
    _bad_models_setup(tmp_path)
    with pytest.raises(PlaypenError, match="12 episode.*clembench.log"):
        play(["crasher"], tmp_path / "results", instances="instances_heldout")


def test_the_demo_game_is_package_data_of_a_non_editable_install(tmp_path):
    """A wheel of the project holds every file of the demo game, and an installed (non-editable) playpen_tune
    finds them through importlib.resources, far from any source checkout."""
    import shutil
    import subprocess
    import sys
    import zipfile

    repo = Path(__file__).resolve().parents[1]
    source = tmp_path / "src"  # a copy, so that the build leaves no build/ or egg-info in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, source / name)
    for package in ("playpen", "playpen_tune"):
        shutil.copytree(repo / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "wheel"), str(source)], check=True)
    [wheel] = (tmp_path / "wheel").glob("playpen_tune-*.whl")
    game_files = sorted(str(p.relative_to(repo)) for p in DEMO_GAME_DIR.rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts)
    assert "playpen_tune/demo_game/wordecho/in/instances_train.json" in game_files
    with zipfile.ZipFile(wheel) as archive:
        assert set(game_files) <= set(archive.namelist())

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True)
    code = ("import playpen_tune.games as g; print(g.__file__); print(g.DEMO_GAME_DIR); "
            "print(g.write_game_registry('.'))")
    shown = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(site)),
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert shown[0].startswith(str(site)) and Path(shown[1]) == site / "playpen_tune" / "demo_game" / DEMO_GAME_NAME
    assert json.loads((tmp_path / "game_registry.json").read_text()) == [{"benchmark_path": shown[1]}]
    assert (Path(shown[1]) / "clemgame.json").is_file() and (Path(shown[1]) / "master.py").is_file()
