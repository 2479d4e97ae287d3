"""grpo_qlora on tiny offline models: the policy plays the demo game through clemcore, the loss
counts only its own tokens, rewards come from clemcore's scores.json, and bad input is refused
before anything heavy loads."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from playpen_tune.games import DEMO_SPLIT_FILE

FAST = ["-g", "wordecho", "--split_source", str(DEMO_SPLIT_FILE), "--num_generations", "2",
        "--per_device_train_batch_size", "2",
        "--max_tokens", "6", "--logging_steps", "1", "--save_steps", "100", "--learning_rate", "1e-3"]


@pytest.fixture
def game_dir(workdir) -> Path:
    from playpen_tune.games import write_game_registry

    write_game_registry(workdir)
    return workdir


def error_lines(result) -> list[str]:
    return [line for line in result.err.splitlines() if line.startswith("error:")]


def test_grpo_plays_clemcore_episodes_and_records_them(playpen, game_dir):
    result = playpen("learn", "-l", "grpo_qlora", "-m", "tiny", "--max_steps", "2", "--beta", "0.1", *FAST)
    assert result.code == 0, result
    out = game_dir / "models" / "tiny-grpo_qlora"
    manifest = json.loads((out / "playpen_run.json").read_text())
    assert manifest["learner"]["name"] == "grpo_qlora"
    assert manifest["reward"]["name"] == "success" and "scores.json" in manifest["reward"]["source"]
    assert [entry["step"] for entry in manifest["reward_history"]] == [1, 2]
    assert manifest["quantized_modules"]  # the base is 4-bit bitsandbytes
    # a token count is a setting, not a credential: kept in the config and the command line
    assert manifest["config"]["max_tokens"] == 6
    assert manifest["command_line"][manifest["command_line"].index("--max_tokens") + 1] == "6"
    assert manifest["curves"] == "training_curves.png" and (out / "training_curves.png").stat().st_size > 0
    for bar in ("Scoring episodes", "Playing game instances"):  # clemcore's bars go to train.log, not across ours
        assert bar not in result.err, result.err[-2000:]
    # every rollout is a clemcore episode record with the reward clemcore's scorer gave it
    episodes = sorted((out / "rollouts").rglob("interactions.json"))
    assert len(episodes) == 2 * 2
    for step, entry in zip((1, 2), manifest["rollout_log"], strict=False):
        scores = sorted(Path(entry["directory"]).rglob("scores.json"))
        outcomes = [json.loads(path.read_text())["episode scores"] for path in scores]
        expected = [1.0 if s["Success"] else (-1.0 if s["Aborted"] else 0.0) for s in outcomes]
        assert entry["rewards"] == expected
        assert manifest["reward_history"][step - 1]["mean_reward"] == sum(expected) / len(expected)
        # one group of G=2 per step: it carries a learning signal only if clemcore scored its episodes differently
        assert manifest["reward_history"][step - 1]["varied_groups"] == float(len(set(expected)) > 1)
    # the rollouts load as training data, like any clemcore results directory
    from playpen_tune.data import load_sft_dataset

    dataset, report = load_sft_dataset([str(out / "rollouts")], outcomes=["success", "failure", "aborted"])
    assert len(dataset) == report.total == 4
    assert json.loads((game_dir / "model_registry.json").read_text())[-1]["model_name"] == "tiny-grpo_qlora"


def test_only_the_policys_tokens_are_trained_in_the_context_it_saw(tiny_model_dir):
    """Two turns of one episode: game-master tokens are masked (0), the policy's own are not (1), and the
    sequence is the chat-template rendering of the conversation as the model saw it."""
    from clemcore.backends import ModelSpec
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from playpen_tune.rl.rollout import LivePolicy, PolicyModel, Traces, TransformersGenerator

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    spec = ModelSpec.from_dict({"model_name": "policy", "model_config": {"eos_to_cull": r"(?s)<\|eot_id\|>.*"}})
    traces = Traces(tokenizer, {}, "policy")
    policy = PolicyModel(LivePolicy(spec, tokenizer, TransformersGenerator(model, tokenizer), {}, 1.0, 5), traces)
    turn1 = [{"role": "user", "content": "Word echo game.\nSay the word: apple"}]
    (_, _, answer), = policy.generate_batch_response([turn1])
    turn2 = turn1 + [{"role": "assistant", "content": answer}, {"role": "user", "content": "Say the word: river"}]
    (_, _, answer2), = policy.generate_batch_response([turn2])
    trace = traces.of(turn2 + [{"role": "assistant", "content": answer2}])

    assert trace.prompt_ids == tokenizer.apply_chat_template(turn1, add_generation_prompt=True, tokenize=True,
                                                             return_dict=False)
    assert len(trace.env_mask) == len(trace.completion_ids)
    spans, current = [], None  # (mask, tokens) runs
    for token, mask in zip(trace.completion_ids, trace.env_mask, strict=True):
        if current is None or current[0] != mask:
            current = (mask, [])
            spans.append(current)
        current[1].append(token)
    assert [mask for mask, _ in spans] == [1, 0, 1]
    game_master = tokenizer.decode(spans[1][1])
    assert game_master.endswith("<|start_header_id|>user<|end_header_id|>\n\nSay the word: river<|eot_id|>"
                                "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert len(spans[0][1]) <= 5 and len(spans[2][1]) <= 5  # --max_tokens per turn


def test_bad_input_is_one_error_line_before_loading(playpen, game_dir, tmp_path):
    from playpen_tune.tiny import build_tokenizer

    cases = [
        (["--num_generations", "1"], "--num_generations must be >= 2"),
        (["--split", "nosuch"], "has no split 'nosuch' (splits: train, validation); pass --split train"),
        (["--suite", "clem"], "pass either -g GAME[,GAME...] or --suite clem"),
        (["-t", "no-such-model"], "--partner no-such-model cannot be loaded"),
        (["--reward", "episode scores.No Such Score"], "scores.json has no 'No Such Score'"),
        (["--vllm_server_base_url", "http://gpu:8000"], "--vllm_server_base_url applies only with --use_vllm"),
        (["--player", "2"], "--player 2: wordecho has 1 player(s)"),
    ]
    for options, expected in cases:
        result = playpen("learn", "-l", "grpo_qlora", "-m", "tiny", "--max_steps", "1", *FAST, *options)
        assert result.code == 2, result
        assert len(error_lines(result)) == 1 and expected in error_lines(result)[0], result
        assert not (game_dir / "models").exists()
    # offline, without --split_source: the default hub source is unreadable; the fix named is one grpo_qlora has
    offline = [arg for arg in FAST if arg not in ("--split_source", str(DEMO_SPLIT_FILE))]
    result = playpen("learn", "-l", "grpo_qlora", "-m", "tiny", "--max_steps", "1", *offline)
    assert result.code == 2 and len(error_lines(result)) == 1, result
    assert "pass --split_source FILE" in error_lines(result)[0] and "--all_instances" not in result.err, result
    assert not (game_dir / "models").exists()
    # a model whose tokenizer has no chat template
    plain = tmp_path / "plain"
    import shutil

    shutil.copytree(json.loads((game_dir / "model_registry.json").read_text())[0]["huggingface_id"], plain)
    tokenizer = build_tokenizer()
    tokenizer.chat_template = None
    tokenizer.save_pretrained(plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    result = playpen("learn", "-l", "grpo_qlora", "-m", str(plain), "--max_steps", "1", *FAST)
    assert result.code == 2 and "has no chat template" in error_lines(result)[0], result
    assert not (game_dir / "models").exists()


def test_instances_come_from_the_split_as_for_playpen_play(game_dir, tmp_path):
    """-g and --suite clem select games, --split/--split_source their instances, with playpen play's checks."""
    import shutil

    from playpen.errors import PlaypenError
    from playpen_tune.games import DEMO_GAME_DIR
    from playpen_tune.rl.split_instances import split_instances

    train = split_instances(["wordecho"], None, "train", str(DEMO_SPLIT_FILE))
    specs, rows = train.games, train.rows
    assert list(specs) == ["wordecho"] and len(rows) == 48 and train.source == str(DEMO_SPLIT_FILE)
    assert {row["experiment"]["name"] for row in rows.values()} == {"train"}
    held_out = split_instances(["wordecho"], None, "validation", str(DEMO_SPLIT_FILE)).rows
    assert len(held_out) == 12 and not set(held_out) & set(rows)
    # a split file whose train split names no wordecho instance: one clear error, as for playpen play
    split_file = tmp_path / "splits.jsonl"
    split_file.write_text("\n".join(json.dumps({"game": game, "experiment": experiment, "task_id": 1, "split": split})
                                    for game, experiment, split in [("wordecho", "heldout", "validation"),
                                                                    ("othergame", "x", "train")]))
    with pytest.raises(PlaypenError, match="split 'train' of .* has no instances of wordecho; pass another "
                                           "--split or --split_source$"):  # grpo_qlora has no --all_instances
        split_instances(["wordecho"], None, "train", str(split_file))
    # --suite clem: every benchmark-2.0 game of the registry (here a copy of wordecho marked 2.0)
    with pytest.raises(PlaypenError, match="no game matches"):
        split_instances([], "clem", "train", str(DEMO_SPLIT_FILE))
    copy = shutil.copytree(DEMO_GAME_DIR, tmp_path / "games" / "wordecho")
    spec = json.loads((copy / "clemgame.json").read_text())
    (copy / "clemgame.json").write_text(json.dumps({**spec, "benchmark": ["2.0"]}))
    (game_dir / "game_registry.json").write_text(json.dumps([{"benchmark_path": str(copy)}]))
    clem = split_instances([], "clem", "train", str(DEMO_SPLIT_FILE))
    assert list(clem.games) == ["wordecho"] and len(clem.rows) == 48


def test_rewards_come_from_scores_json():
    from playpen.errors import PlaypenError
    from playpen_tune.rl.reward import episode_reward

    won = {"episode scores": {"Success": 1, "Lose": 0, "Aborted": 0, "Main Score": 100.0,
                              "Request Success Ratio": 1.0, "Correct Words": 2}}
    aborted = {"episode scores": {"Success": 0, "Lose": 0, "Aborted": 1, "Main Score": float("nan"),
                                  "Request Success Ratio": 0.5, "Correct Words": 1}}
    assert [episode_reward(s, "success") for s in (won, aborted)] == [1.0, -1.0]
    assert [episode_reward(s, "main_score") for s in (won, aborted)] == [1.0, 0.0]
    assert episode_reward(aborted, "episode scores.Correct Words") == 1.0
    assert episode_reward(aborted, "success", format_reward=0.5) == -0.75
    with pytest.raises(PlaypenError, match="no 'Nope'"):
        episode_reward(won, "episode scores.Nope")


def test_grpo_qlora_is_an_installed_learner():
    """Passes once the package is (re)installed: the entry point is in pyproject.toml."""
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="playpen.learners")}
    assert names.get("grpo_qlora") == "playpen_tune.learners.grpo:GRPOQLoRALearner"


def register_relay(workdir: Path, tmp_path: Path) -> Path:
    """Add the two-player test game ``relay`` to the game registry; return a split file with all its
    instances in ``train``."""
    from playpen.files import append_entry
    from tests.fixture_data import RELAY_GAME_DIR, relay_instances

    append_entry({"benchmark_path": str(RELAY_GAME_DIR)}, workdir / "game_registry.json")
    split_file = tmp_path / "relay-splits.jsonl"
    split_file.write_text("\n".join(json.dumps({"game": "relay", "experiment": row["experiment"],
                                                "task_id": row["game_id"], "split": "train"})
                                    for row in relay_instances()))
    return split_file


@pytest.mark.parametrize("partner, player", [("programmatic", 1), (None, 1), ("programmatic", 2)],
                         ids=["partner", "self-play", "guesser-with-partner"])
def test_grpo_plays_a_two_player_game(playpen, workdir, tmp_path, partner, player):
    """The policy plays player ``--player`` (1: the Describer, 2: the Guesser) of the two-player test game
    ``relay``; the other role is the partner (-t) or, without -t, the policy itself; each reward is the
    score clemcore wrote."""
    split_file = register_relay(workdir, tmp_path)
    result = playpen("learn", "-l", "grpo_qlora", "-m", "tiny", "-g", "relay", "--split_source", str(split_file),
                     "--num_generations", "2", "--per_device_train_batch_size", "4", "--max_tokens", "6",
                     "--max_steps", "2", "--logging_steps", "1", "--save_steps", "100",
                     "--player", str(player), *(["-t", partner] if partner else []))
    assert result.code == 0, result
    out = workdir / "models" / "tiny-grpo_qlora"
    manifest = json.loads((out / "playpen_run.json").read_text())
    assert manifest["partner"] == partner and manifest["player"] == player
    assert manifest["data"]["split_source"] == str(split_file)  # the source the instances came from
    episodes = sorted((out / "rollouts").rglob("interactions.json"))
    assert len(episodes) == 2 * 4
    policy_role, other_role = ("Describer", "Guesser") if player == 1 else ("Guesser", "Describer")
    others = set()
    for path in episodes:
        interactions = json.loads(path.read_text())
        players = {p["game_role"]: p["model_name"] for name, p in interactions["players"].items() if name != "GM"}
        assert players[policy_role] == "tiny-grpo_qlora"
        others.add(players[other_role])
    assert others == {partner or "tiny-grpo_qlora"}
    # every reward is the one clemcore's relay scorer wrote for that episode
    for entry in manifest["rollout_log"]:
        outcomes = [json.loads(path.read_text())["episode scores"]
                    for path in sorted(Path(entry["directory"]).rglob("scores.json"))]
        assert entry["rewards"] == [1.0 if s["Success"] else (-1.0 if s["Aborted"] else 0.0) for s in outcomes]
    if partner and player == 1:  # the scripted Guesser always names a candidate: won or lost, never aborted
        assert {reward for entry in manifest["rollout_log"] for reward in entry["rewards"]} <= {0.0, 1.0}


def test_self_play_learns_from_the_turns_of_the_chosen_player(tiny_model_dir, tmp_path):
    """Without a partner the policy plays both relay roles; the trace handed to TRL is player N's: its
    first context is the prompt the game master gave that role."""
    import torch
    from clemcore.backends import ModelSpec
    from clemcore.clemgame import GameSpec
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from playpen_tune.rl.rollout import LivePolicy, TransformersGenerator, play_episodes
    from tests.fixture_data import RELAY_GAME_DIR

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    spec = ModelSpec.from_dict({"model_name": "policy", "model_config": {"eos_to_cull": r"(?s)<\|eot_id\|>.*"}})
    generator = TransformersGenerator(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tokenizer)
    policy = LivePolicy(spec, tokenizer, generator, {}, temperature=1.0, max_tokens=4)
    game = GameSpec.from_dict(json.loads((RELAY_GAME_DIR / "clemgame.json").read_text())
                              | {"game_path": str(RELAY_GAME_DIR)})
    document = json.loads((RELAY_GAME_DIR / "in" / "instances.json").read_text())
    experiment = document["experiments"][0]
    rows = [{"experiment": experiment, "game_instance": instance} for instance in experiment["game_instances"]]
    torch.manual_seed(0)
    describer = play_episodes(game, rows, policy, [], tmp_path / "player-1", player=1)
    guesser = play_episodes(game, rows, policy, [], tmp_path / "player-2", player=2)
    assert all("Target word:" in tokenizer.decode(episode.trace.prompt_ids) for episode in describer)
    played = [episode for episode in guesser if 1 in episode.trace.env_mask]
    assert played  # the Guesser's prompt: the clue and the candidates, not the target
    assert all("The describer says:" in tokenizer.decode(episode.trace.prompt_ids)
               and "Target word:" not in tokenizer.decode(episode.trace.prompt_ids) for episode in played)
    # an episode that ended before the Guesser's turn (an empty clue aborts) keeps its reward, trains nothing
    for episode in guesser:
        if episode not in played:
            assert episode.scores["episode scores"]["Aborted"] == 1 and episode.trace.env_mask == [0]


def test_each_episode_of_a_group_trains_on_its_own_answers(tiny_model_dir, tmp_path):
    """A GRPO group: one instance played four times in one batch, sampling. The policy tokens of each
    episode's trace are the answers clemcore recorded for that episode, so each reward goes with its tokens."""
    import re
    from itertools import groupby

    import torch
    from clemcore.backends import ModelSpec
    from clemcore.clemgame import GameSpec
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from playpen_tune.games import DEMO_GAME_DIR
    from playpen_tune.rl.rollout import LivePolicy, TransformersGenerator, play_episodes

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    cull = r"(?s)<\|eot_id\|>.*"
    generator = TransformersGenerator(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tokenizer)
    policy = LivePolicy(ModelSpec.from_dict({"model_name": "policy", "model_config": {"eos_to_cull": cull}}),
                        tokenizer, generator, {}, temperature=1.0, max_tokens=4)
    game = GameSpec.from_dict(json.loads((DEMO_GAME_DIR / "clemgame.json").read_text())
                              | {"game_path": str(DEMO_GAME_DIR)})
    experiment = json.loads((DEMO_GAME_DIR / "in" / "instances_train.json").read_text())["experiments"][0]
    row = {"experiment": experiment, "game_instance": experiment["game_instances"][0]}
    torch.manual_seed(0)
    episodes = play_episodes(game, [row] * 4, policy, [], tmp_path)

    answers = []
    for episode in episodes:
        turns = json.loads((episode.directory / "interactions.json").read_text())["turns"]
        recorded = [event["action"]["content"] for round_ in turns for event in round_
                    if event["action"]["type"] == "get message"]
        pairs = zip(episode.trace.completion_ids, episode.trace.env_mask, strict=True)
        spans = [[token for token, _ in run] for mask, run in groupby(pairs, key=lambda pair: pair[1]) if mask]
        generated = [re.sub(cull, "", tokenizer.decode(span)).strip() for span in spans]
        assert generated == recorded
        answers.append(tuple(recorded))
    assert len(set(answers)) > 1  # the episodes went different ways: a swapped trace would show


def test_episodes_that_end_before_the_policys_turn_count_with_their_reward(playpen, workdir, tmp_path, monkeypatch):
    """The policy is the Guesser; its partner, a Describer that gives no clue, aborts every episode before
    the Guesser's turn. The run trains on those episodes' rewards (clemcore's: aborted, -1) with no policy
    tokens to learn from, and completes."""
    from clemcore.backends import BatchGenerativeModel, ModelSpec

    from playpen_tune.learners import game_environment

    class SilentDescriber(BatchGenerativeModel):
        def generate_response(self, messages):
            return {}, {}, ""

        def generate_batch_response(self, batch_messages):
            return [self.generate_response(messages) for messages in batch_messages]

    monkeypatch.setattr(game_environment, "load_partners", lambda config, games: {
        "relay": [SilentDescriber(ModelSpec(model_name="silent"))]})  # any clemcore Model can be the partner
    split_file = register_relay(workdir, tmp_path)
    result = playpen("learn", "-l", "grpo_qlora", "-m", "tiny", "-g", "relay", "--split_source", str(split_file),
                     "--player", "2", "-t", "programmatic", "--num_generations", "2", "--per_device_train_batch_size",
                     "2", "--max_tokens", "4", "--max_steps", "2", "--logging_steps", "1", "--save_steps", "100")
    assert result.code == 0, result
    manifest = json.loads((workdir / "models" / "tiny-grpo_qlora" / "playpen_run.json").read_text())
    assert [entry["rewards"] for entry in manifest["rollout_log"]] == [[-1.0, -1.0], [-1.0, -1.0]]
    assert manifest["metrics"]["final_loss"] == 0.0  # no policy token: nothing to learn, and no NaN
    for entry in manifest["rollout_log"]:
        for path in Path(entry["directory"]).rglob("interactions.json"):
            players = {p["game_role"]: p["model_name"] for name, p in json.loads(path.read_text())["players"].items()
                       if name != "GM"}
            assert players == {"Describer": "silent", "Guesser": "tiny-grpo_qlora"}


def test_grpo_resumes_and_keeps_the_reward_history(playpen, game_dir):
    """--resume continues from the last checkpoint: earlier rollouts stay, and the manifest's reward
    history holds every step of the run, not only the resumed ones."""
    args = ["learn", "-l", "grpo_qlora", "-m", "tiny", *FAST, "--save_steps", "2"]
    assert playpen(*args, "--max_steps", "2").code == 0
    out = game_dir / "models" / "tiny-grpo_qlora"
    first = sorted(path.relative_to(out) for path in (out / "rollouts").rglob("scores.json"))
    more = playpen(*args, "--max_steps", "3", "--resume")
    assert more.code == 0, more
    manifest = json.loads((out / "playpen_run.json").read_text())
    assert manifest["metrics"]["global_step"] == 3 and manifest["resumed_from"].endswith("checkpoint-2")
    assert set(first) <= {path.relative_to(out) for path in (out / "rollouts").rglob("scores.json")}
    assert [entry["step"] for entry in manifest["reward_history"]] == [1, 2, 3]
