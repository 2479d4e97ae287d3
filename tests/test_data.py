"""playpen_tune.data on clembench-evaluation files and a clemcore results directory made by the
fixtures (the two-player test game ``relay`` played by clemcore's scripted players; offline, fast)."""

import hashlib
import json
import re
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest

from playpen.errors import PlaypenError
from playpen_tune.data import (
    conversations_from_episode,
    episode_records,
    load_preference_dataset,
    load_sft_dataset,
    read_rows,
    readers,
    source_kind,
    sources,
)
from tests.conftest import SFT_ROWS
from tests.fixture_data import RELAY_RUN_DIR, relay_instances

# What the scripted relay players do, computed from the instance file (not from the transcripts):
# the guesser picks the first candidate with the target's first letter.
INSTANCES = relay_instances()
WON = [next(c for c in i["candidates"] if c[0] == i["target"][0]) == i["target"] for i in INSTANCES]
EPISODES_PLAYED, SUCCESSES = len(INSTANCES), sum(WON)
FAILURES = EPISODES_PLAYED - SUCCESSES
ROLES = ("Describer", "Guesser")  # both players are models (mock); only the GM is programmatic


@pytest.fixture
def sft_file(evaluation_files):
    return evaluation_files["sft"]


@pytest.fixture
def episodes(relay_results):
    return relay_results / RELAY_RUN_DIR / "relay" / "distinct_letters"


def test_fixture_game_has_successes_and_failures():
    assert SUCCESSES >= 2 and FAILURES >= 2  # the outcome filters below have something to drop and keep
    assert len({i["experiment"] for i in INSTANCES}) == 2


def test_clembench_evaluation_sft_file_loads_as_is(sft_file):
    dataset, report = load_sft_dataset([str(sft_file)])
    assert dataset.num_rows == SFT_ROWS and dataset.column_names == ["messages"]
    assert [m["role"] for m in dataset[0]["messages"]] == ["user", "assistant"]
    assert report.total == SFT_ROWS and report.format == "messages"
    assert report.sources == [{"source": str(sft_file), "kind": "file", "examples": SFT_ROWS, "dropped": {}}]
    assert len(report.fingerprint) == 64
    assert report.fingerprint == load_sft_dataset([str(sft_file)])[1].fingerprint
    assert json.loads(json.dumps(report.to_dict()))["total"] == SFT_ROWS
    assert f"{SFT_ROWS} examples" in report.lines()[0]


def test_clembench_evaluation_dpo_file_loads_as_is(evaluation_files):
    dataset, report = load_preference_dataset([str(evaluation_files["dpo"])])
    assert dataset.num_rows == SFT_ROWS and sorted(dataset.column_names) == ["chosen", "prompt", "rejected"]
    assert all(isinstance(dataset[0][c], str) for c in ("prompt", "chosen", "rejected"))
    assert report.format == "preference (text)"


def test_episode_records_read_outcomes_and_scores(relay_results):
    records = list(episode_records(relay_results))
    assert len(records) == EPISODES_PLAYED
    assert {r["game"] for r in records} == {"relay"}
    assert {r["experiment"] for r in records} == {i["experiment"] for i in INSTANCES}
    assert Counter(r["outcome"] for r in records) == {"failure": FAILURES, "success": SUCCESSES}
    assert all((r["main_score"] == 100.0) == (r["outcome"] == "success") for r in records)


def test_conversations_one_per_model_player_with_metadata(relay_results):
    records = list(episode_records(relay_results))
    conversations = [c for r in records for c in conversations_from_episode(r)]
    assert len(conversations) == 2 * len(records)  # mock players are models, only the GM is programmatic
    assert Counter(c["role"] for c in conversations) == {role: EPISODES_PLAYED for role in ROLES}
    giver, follower = conversations_from_episode(records[0])
    assert giver["player"] == "Player 1" and giver["model"] == "mock"
    assert {k: giver[k] for k in ("game", "outcome")} == {"game": "relay", "outcome": records[0]["outcome"]}
    assert giver["instance"] == records[0]["instance"] and giver["main_score"] == records[0]["main_score"]
    # clemcore 3.7.2 logs one merged context per call: nothing to merge, user/assistant alternate
    assert all([m["role"] for m in c["messages"]] == ["user", "assistant"] for c in conversations)
    # the guesser is prompted with the describer's clue
    assert giver["messages"][1]["content"] in follower["messages"][0]["content"]


def test_conversation_merges_repeated_roles_and_skips_scripted_players():
    def event(from_, to, type_, content, label=None):
        return {"from": from_, "to": to, "action": {"type": type_, "content": content, "label": label}}

    record = {
        "game": "g", "experiment": "e", "instance": 3, "outcome": "aborted", "main_score": None,
        "players": {"GM": {"game_role": "Game Master", "model_name": "programmatic"},
                    "Player 1": {"game_role": "Guesser", "model_name": "m"},
                    "Player 2": {"game_role": "Describer", "model_name": "programmatic"}},
        "turns": [[event("GM", "Player 1", "send message", "rules"),
                   event("GM", "Player 1", "send message", "first clue"),
                   event("Player 1", "GM", "get message", "guess 1"),
                   event("GM", "Player 1", "send message", "invalid, retry", "forget"),
                   event("Player 1", "GM", "get message", "retry", "forget"),
                   event("GM", "Player 2", "send message", "x"),
                   event("GM", "GM", "parse", "guess 1")],
                  [event("GM", "Player 1", "send message", "second clue")]],
    }
    (conversation,) = conversations_from_episode(record)
    assert conversation["messages"] == [{"role": "user", "content": "rules\n\nfirst clue"},
                                        {"role": "assistant", "content": "guess 1"}]
    assert conversation["role"] == "Guesser" and conversation["outcome"] == "aborted"


def test_outcome_filter_drops_failures_and_reports_it(relay_results):
    dataset, report = load_sft_dataset([str(relay_results)])
    assert dataset.num_rows == 2 * SUCCESSES
    assert report.sources[0]["kind"] == "transcripts"
    assert report.sources[0]["dropped"] == {"outcomes": 2 * FAILURES}
    assert f"dropped: outcomes {2 * FAILURES}" in report.lines()[1]
    dataset, _ = load_sft_dataset([str(relay_results)], outcomes=["success", "failure"], roles=["Describer"])
    assert dataset.num_rows == EPISODES_PLAYED


def test_empty_after_filter_names_the_filter(relay_results):
    with pytest.raises(PlaypenError, match=rf"--outcomes aborted dropped all {2 * EPISODES_PLAYED} .*"
                                           r"use --outcomes success,failure,aborted"):
        load_sft_dataset([str(relay_results)], outcomes=["aborted"])
    with pytest.raises(PlaypenError, match=r"--games taboo .*use --games relay"):
        load_sft_dataset([str(relay_results)], games=["taboo"])


def test_transcripts_and_file_rows_combine_but_formats_must_match(tmp_path, sft_file, relay_results):
    dataset, report = load_sft_dataset([str(sft_file), str(relay_results)])
    assert dataset.num_rows == SFT_ROWS + 2 * SUCCESSES
    assert [s["kind"] for s in report.sources] == ["file", "transcripts"]
    completions = tmp_path / "pc.jsonl"
    completions.write_text(json.dumps({"prompt": [{"role": "user", "content": "hi"}],
                                       "completion": [{"role": "assistant", "content": "yo"}], "id": 1}) + "\n")
    dataset, report = load_sft_dataset([str(completions)])
    assert dataset.column_names == ["prompt", "completion"] and report.format == "prompt-completion (messages)"
    with pytest.raises(PlaypenError, match="cannot mix messages rows .* with prompt-completion"):
        load_sft_dataset([str(sft_file), str(completions)])


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": []}\n\n{"messages": [}\n')
    with pytest.raises(PlaypenError, match=rf"{path}:3: invalid JSON line"):
        read_rows(path)


def test_malformed_json_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n {"messages": 1},\n {oops}\n]')
    with pytest.raises(PlaypenError, match=rf"{path}:3:3: invalid JSON"):
        load_sft_dataset([str(path)])


def test_missing_file_and_missing_columns(tmp_path, sft_file):
    with pytest.raises(PlaypenError, match="no such file"):
        load_sft_dataset([str(tmp_path / "absent.jsonl")])
    path = tmp_path / "rows.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "a"}]}\n{"text": "b"}\n')
    with pytest.raises(PlaypenError, match=rf"{path}: row 1 .*'messages' or 'prompt'\+'completion'"):
        load_sft_dataset([str(path)])
    with pytest.raises(PlaypenError, match="row 0 .*'prompt'\\+'chosen'\\+'rejected'"):
        load_preference_dataset([str(sft_file)])


def test_hub_offline_suggests_a_local_file(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PlaypenError, match="Hub is unreachable.*local .json/.jsonl file"):
        load_sft_dataset(["allenai/tulu-3-sft-personas-instruction-following"])


def test_results_dir_errors(tmp_path, episodes):
    with pytest.raises(PlaypenError, match="no interactions.json"):
        load_sft_dataset([str(tmp_path)])
    episode = tmp_path / "m--m/relay/distinct_letters/instance_00000"
    shutil.copytree(episodes / "instance_00000", episode)
    (episode / "scores.json").unlink()
    with pytest.raises(PlaypenError, match="no scores.json; score the run first: clem score"):
        load_sft_dataset([str(tmp_path)])


def _copy_episode(episodes: Path, results: Path, model_dir: str, instance: str, success: bool) -> Path:
    episode = results / model_dir / "relay/distinct_letters" / instance
    shutil.copytree(episodes / instance, episode)
    scores = json.loads((episode / "scores.json").read_text())
    scores["episode scores"].update({"Success": int(success), "Lose": int(not success), "Main Score": 100 * success})
    (episode / "scores.json").write_text(json.dumps(scores))
    return episode


def test_preference_pairs_from_two_model_folders(tmp_path, episodes):
    results = tmp_path / "results"
    for instance in ("instance_00000", "instance_00001", "instance_00002"):
        _copy_episode(episodes, results, "a--a", instance, success=False)
    _copy_episode(episodes, results, "b--b", "instance_00001", success=False)
    better = _copy_episode(episodes, results, "b--b", "instance_00000", success=True)
    interactions = json.loads((better / "interactions.json").read_text())
    answer = next(e for e in interactions["turns"][0]
                  if e["from"] == "Player 2" and e["action"]["type"] == "get message")
    worse_answer, answer["action"]["content"] = answer["action"]["content"], "GUESS: river"
    (better / "interactions.json").write_text(json.dumps(interactions))

    dataset, report = load_preference_dataset([str(results)])
    assert dataset.num_rows == 1
    pair = dataset[0]
    assert [m["role"] for m in pair["prompt"]] == ["user"]
    assert "Which word is the target" in pair["prompt"][0]["content"]
    assert pair["chosen"] == [{"role": "assistant", "content": "GUESS: river"}]
    assert pair["rejected"] == [{"role": "assistant", "content": worse_answer}]
    assert report.format == "preference (messages)"
    # describer answers of instance 0 are identical; instance 1 scored the same; instance 2 ran once (two roles each)
    assert report.sources[0]["dropped"] == {"identical answers": 1, "equal scores": 2, "single episode": 2}

    _, report = load_preference_dataset([str(results)], roles=["Guesser"])
    assert report.sources[0]["dropped"] == {"roles": 5, "equal scores": 1, "single episode": 1}
    with pytest.raises(PlaypenError,
                       match=r"0 preference pairs .*score gap below min_score_gap 2.*lower min_score_gap"):
        load_preference_dataset([str(results)], min_score_gap=150)


def _tamper(episodes: Path, results: Path, change) -> Path:
    """Copy one episode of ``episodes`` into ``results`` and apply ``change`` to its interactions (a dict)."""
    episode = _copy_episode(episodes, results, "a--a", "instance_00000", success=True)
    interactions = json.loads((episode / "interactions.json").read_text())
    change(interactions)
    (episode / "interactions.json").write_text(json.dumps(interactions))
    return episode


def _set(key, value, turn=0, event=1):
    def change(interactions):
        target = interactions["turns"][turn][event]
        if key in ("content", "type"):
            target = target["action"]
        if value is _DELETE:
            del target[key]
        else:
            target[key] = value
    return change


_DELETE = object()


@pytest.mark.parametrize("change, problem", [
    (_set("action", _DELETE), r"turn 0 event 1 \(0-based\) has no 'action'"),
    (_set("to", _DELETE, event=0), r"turn 0 event 0 \(0-based\) has no 'to'"),
    (_set("from", _DELETE), r"turn 0 event 1 \(0-based\) has no 'from'"),
    (_set("type", _DELETE), r"turn 0 event 1 \(0-based\): action has no 'type'"),
    (_set("type", 7), r"turn 0 event 1 \(0-based\): action 'type' is a number, not a string"),
    (_set("action", "get message"), r"turn 0 event 1 \(0-based\): 'action' is a string, not an object"),
    (lambda i: i.update(turns=None), r"'turns' is null, not a list of rounds"),
    (lambda i: i["turns"].append({"0": []}), r"turn 1 \(0-based\) is an object, not a list of events"),
    (_set("content", {"text": "hi"}), r"turn 0 event 1 \(0-based\): message content is an object, not a string"),
    (_set("content", ["hi"], event=3), r"turn 0 event 3 \(0-based\): message content is an array, not a string"),
])
def test_malformed_transcript_names_episode_and_problem(tmp_path, episodes, change, problem):
    episode = _tamper(episodes, tmp_path / "results", change)
    with pytest.raises(PlaypenError,
                       match=rf"^{re.escape(str(episode))}/interactions.json: {problem}; fix or remove this episode$"):
        load_sft_dataset([str(tmp_path / "results")], outcomes=None)


def test_malformed_players_is_a_playpen_error(tmp_path, episodes):
    _tamper(episodes, tmp_path / "results", lambda i: i.update(players=["Player 1"]))
    with pytest.raises(PlaypenError, match="instance_00000: not a clemcore 3.7 episode record"):
        list(episode_records(tmp_path / "results"))


@pytest.mark.parametrize("typo", ["data/sft.csv", "sft.parquet", "train.txt", "results/", "runs/2024/results",
                                  "./results", "~/no-such-playpen-results"])
def test_local_path_typos_are_not_hub_ids(tmp_path, monkeypatch, typo):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PlaypenError, match=rf"^{typo}: no such file or directory.*; check the path$"):
        load_sft_dataset([typo])


def test_source_kinds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert source_kind("org/name") == source_kind("name") == "hub"
    assert source_kind("absent.jsonl") == "file"  # read_rows says it is missing
    (tmp_path / "runs").mkdir()
    assert source_kind("runs/") == source_kind("runs") == "transcripts"
    (tmp_path / "rows.csv").write_text("messages\n")
    with pytest.raises(PlaypenError, match=r"rows.csv: unsupported data file type '.csv' \(supported: .json, .jsonl"):
        source_kind("rows.csv")
    with pytest.raises(PlaypenError, match=r"missing.tsv: no such file or directory \(supported: .json, .jsonl"):
        source_kind("missing.tsv")


def _canonical_sha256(rows: list) -> str:
    text = json.dumps(rows, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_fingerprint_is_the_sha256_of_the_canonical_rows(sft_file):
    _, report = load_sft_dataset([str(sft_file)])
    assert report.fingerprint == _canonical_sha256(read_rows(sft_file))
    assert sources._fingerprint([]) == _canonical_sha256([])


def test_hub_rows_keep_used_columns_lazily_and_hash_row_by_row(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [{"id": i, "messages": [{"role": "user", "content": f"q{i} \u00e9"}, {"role": "assistant", "content": "a"}],
             "meta": {"source": "x"}} for i in range(2500)]
    hub = datasets.Dataset.from_list(rows)
    monkeypatch.setattr(readers, "load_hub_dataset", lambda dataset_id, split: hub)

    def no_to_list(self):
        raise AssertionError("the whole Hub dataset was converted to Python objects")

    dumped = []

    def dumps(value, **kwargs):
        dumped.append(type(value))
        return json.dumps(value, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "to_list", no_to_list)
    monkeypatch.setattr(sources, "json", SimpleNamespace(dumps=dumps))
    dataset, report = load_sft_dataset(["org/sft"])
    assert dataset.column_names == ["messages"] and dataset.num_rows == 2500
    assert dataset[2499]["messages"][0]["content"] == "q2499 \u00e9"
    assert report.sources == [{"source": "org/sft", "kind": "hub", "examples": 2500, "dropped": {}}]
    assert dumped and list not in dumped  # rows hashed one at a time, never the whole list as one string
    assert report.fingerprint == _canonical_sha256([{"messages": r["messages"]} for r in rows])


def test_hub_dataset_without_the_needed_columns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(readers, "load_hub_dataset",
                        lambda dataset_id, split: datasets.Dataset.from_list([{"text": "a", "id": 1}]))
    with pytest.raises(PlaypenError, match=r"org/x \(split train\): has columns \['id', 'text'\] but needs 'messages' "
                                           r"or 'prompt'\+'completion'"):
        load_sft_dataset(["org/x"])


class WordsSource:
    """A third-party data source: ``words:a+b+c`` is one conversation per word."""

    def claims(self, source: str) -> bool:
        return source.startswith("words:")

    def read(self, source, split, column_sets):
        words = source.removeprefix("words:").split("+")
        return source, [{"messages": [{"role": "user", "content": f"Say the word: {word}."},
                                      {"role": "assistant", "content": f"ANSWER: {word}"}]} for word in words]


def test_a_plugin_data_source_feeds_the_builtin_learner(playpen, workdir):
    """``playpen_register_data_sources``: a plugin's kind is read by sft_qlora like a built-in one."""
    from playpen import hookimpl
    from playpen.plugins import pm

    class Plugin:
        @hookimpl
        def playpen_register_data_sources(self):
            return {"words": WordsSource()}

    plugin = Plugin()
    pm.register(plugin)
    try:
        assert sources.source_kind("words:apple") == "words"
        result = playpen("learn", "-l", "sft_qlora", "-m", "tiny", "--name", "worded", "--max_steps", "1",
                         "--dataset", "words:apple+pear+plum")
    finally:
        pm.unregister(plugin)
    assert result.code == 0, result
    manifest = json.loads((workdir / "models" / "worded" / "playpen_run.json").read_text())
    assert manifest["data"]["sources"] == [{"source": "words:apple+pear+plum", "kind": "words", "examples": 3,
                                            "dropped": {}}]
    assert manifest["metrics"]["global_step"] == 1
