"""Episodes of a clemcore (3.7) results directory and the conversations of their players.

A results directory (``clem run``, then ``clem score``) holds one folder per episode,
``<model-pair>/<game>/<experiment>/instance_<id>/``, with ``interactions.json`` (meta, players,
turns of events) and ``scores.json`` (turn and episode scores).
"""

from collections.abc import Iterator
from pathlib import Path

from playpen.api import PlaypenError, score_number
from playpen_tune.data.files import read_json

OUTCOMES = ("success", "failure", "aborted")


def episode_records(results_dir: str | Path) -> Iterator[dict]:
    """Yield one record per episode folder (interactions.json + scores.json), in path order.

    A record holds ``episode_dir``, ``game``, ``experiment``, ``instance`` (the game_id),
    ``players`` (name -> {"game_role", "model_name"}), ``outcome`` ("success", "failure" or
    "aborted"), ``main_score`` (float, or None when missing or NaN) and the raw ``turns``.
    """
    root = Path(results_dir)
    paths = sorted(root.rglob("interactions.json")) if root.is_dir() else []
    if not paths:
        raise PlaypenError(
            f"{root}: no interactions.json found; pass a clemcore results directory (as written by `clem run`)"
        )
    for path in paths:
        yield _record(path, root)


def conversations_from_episode(record: dict) -> list[dict]:
    """Return one conversation per model-played player of an episode (not the GM, not programmatic).

    Messages sent to the player are ``user`` turns, its answers ``assistant`` turns; consecutive
    same-role messages are joined with a blank line as clemcore's backends do, events labelled
    "forget" (not kept in the player's memory) are left out, and a trailing unanswered message is
    dropped. Each conversation is ``{"messages": [...]}`` plus game, experiment, instance, role,
    player, model, outcome, main_score and episode_dir.
    """
    conversations = []
    for name, player in record["players"].items():
        if name == "GM" or player["model_name"] == "programmatic":
            continue
        messages = _messages(record["turns"], name, record.get("episode_dir"))
        if not messages:
            continue
        conversations.append({
            "messages": messages,
            "game": record["game"],
            "experiment": record["experiment"],
            "instance": record["instance"],
            "role": player["game_role"],
            "player": name,
            "model": player["model_name"],
            "outcome": record["outcome"],
            "main_score": record["main_score"],
            "episode_dir": record.get("episode_dir"),
        })
    return conversations


def _record(path: Path, root: Path) -> dict:
    scores_path = path.with_name("scores.json")
    if not scores_path.is_file():
        raise PlaypenError(f"{path.parent}: episode has no scores.json; score the run first: clem score -r {root}")
    interactions, scores = read_json(path), read_json(scores_path)
    try:
        meta, episode = interactions["meta"], scores["episode scores"]
        players = {
            name: {"game_role": info["game_role"], "model_name": info["model_name"]}
            for name, info in interactions["players"].items()
        }
        return {
            "episode_dir": str(path.parent),
            "game": meta["game_name"],
            "experiment": meta["experiment_name"],
            "instance": meta["game_id"],
            "players": players,
            "outcome": _outcome(episode),
            "main_score": score_number(episode.get("Main Score")),
            "turns": _checked_turns(interactions["turns"], path),
        }
    except (KeyError, TypeError, AttributeError) as error:
        raise PlaypenError(
            f"{path.parent}: not a clemcore 3.7 episode record ({type(error).__name__}: {error}); "
            "regenerate it with clemcore>=3.7 (clem run, then clem score)"
        ) from None


def _outcome(episode_scores: dict) -> str:
    if episode_scores["Aborted"] == 1:
        return "aborted"
    if episode_scores["Success"] == 1:
        return "success"
    return "failure"


def _checked_turns(turns, path: Path) -> list:
    """Return ``turns`` if it is a list of rounds of events each with 'from', 'to' and an action type."""
    def fail(problem: str):
        raise PlaypenError(f"{path}: {problem}; fix or remove this episode")

    if not isinstance(turns, list):
        fail(f"'turns' is {_json_type(turns)}, not a list of rounds")
    for t, round_events in enumerate(turns):
        if not isinstance(round_events, list):
            fail(f"turn {t} (0-based) is {_json_type(round_events)}, not a list of events")
        for e, event in enumerate(round_events):
            at = f"turn {t} event {e} (0-based)"
            if not isinstance(event, dict):
                fail(f"{at} is {_json_type(event)}, not an object")
            for key in ("action", "from", "to"):
                if key not in event:
                    fail(f"{at} has no '{key}'")
            if not isinstance(event["action"], dict):
                fail(f"{at}: 'action' is {_json_type(event['action'])}, not an object")
            if "type" not in event["action"]:
                fail(f"{at}: action has no 'type'")
            if not isinstance(event["action"]["type"], str):
                fail(f"{at}: action 'type' is {_json_type(event['action']['type'])}, not a string")
    return turns


def _json_type(value) -> str:
    """Name a JSON value's type for messages: null, a boolean, a number, a string, an array, an object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object" if isinstance(value, dict) else type(value).__name__


def _messages(turns: list, player: str, episode_dir: str | None = None) -> list[dict]:
    messages: list[dict] = []
    for t, round_events in enumerate(turns):
        for e, event in enumerate(round_events):
            action = event["action"]
            if action.get("label") == "forget":
                continue
            if action["type"] == "send message" and event["to"] == player:
                role = "user"
            elif action["type"] == "get message" and event["from"] == player:
                role = "assistant"
            else:
                continue
            content = action.get("content")
            if not isinstance(content, str):
                where = f"{episode_dir}/interactions.json" if episode_dir else "episode"
                raise PlaypenError(
                    f"{where}: turn {t} event {e} (0-based): message content is {_json_type(content)}, "
                    "not a string; fix or remove this episode"
                )
            if messages and messages[-1]["role"] == role:
                messages[-1]["content"] += "\n\n" + content
            else:
                messages.append({"role": role, "content": content})
    while messages and messages[-1]["role"] == "user":
        messages.pop()
    return messages
