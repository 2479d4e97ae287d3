"""What a learner that learns from play trains on: the games and the instances it plays, its partners,
its player and its reward, as one :class:`GameEnvironment` value.

It is the play counterpart of :class:`~playpen_tune.learners.training_data.TrainingData`: a learner's
``data()`` returns one of the two and its ``trainer()`` receives it as its argument, so nothing the
trainer needs is left on the learner. Loading it checks everything that can be checked before a model
loads: the splits, the contamination guard, each game's players, the reward (on a check episode of
clemcore's programmatic player) and the partner models.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from playpen.api import PlaypenError


@dataclass
class GameEnvironment:
    """The games a policy learns from by playing them, and what the manifest says about them.

    Attributes:
        games: ``{game name: clemcore GameSpec}`` of the games played.
        train: ``{episode key: instance row}`` of ``--split``, the instances the policy learns on.
        held_out: ``{episode key: instance row}`` of ``--eval_split``, each played once per evaluation
            and never learnt from; empty without ``--eval_split``.
        partners: ``{game: [partner model] * (players - 1)}``, the models in every role but the policy's
            (empty lists in self-play).
        player: the player the policy is (and learns as) in multi-player games (``--player``).
        reward: the episode reward (``--reward``): success, main_score or a dotted path into scores.json.
        format_reward: the weight of the episode's Request Success Ratio added to the reward.
        fingerprint: identifies the training instances (``--resume`` refuses others).
        record: the manifest's ``data`` section.
        facts: top-level manifest keys about the environment (reward definition, partner, player).
    """

    games: dict
    train: dict
    held_out: dict
    partners: dict
    player: int
    reward: str
    format_reward: float
    fingerprint: str
    record: dict
    facts: dict = field(default_factory=dict)

    @property
    def instances(self) -> dict:
        """Every instance an episode may be played of: the training and the held-out ones, by episode key."""
        return {**self.train, **self.held_out}

    def reward_of(self, scores: dict) -> float:
        """The reward of one episode, from the scores.json clemcore wrote for it."""
        from playpen_tune.rl.reward import episode_reward

        return episode_reward(scores, self.reward, self.format_reward)


def load_game_environment(config) -> GameEnvironment:
    """The environment of a config with the ``GamesConfig`` fields: the instances of the games' split (and
    held-out split), checked against the evaluation split, each game's players and the reward checked,
    the partners loaded once."""
    from playpen_tune.rl import reward as rewards
    from playpen_tune.rl.rollout import number_of_players
    from playpen_tune.rl.split_instances import split_instances

    train = split_instances(config.games, config.suite, config.split, config.split_source)
    games, train_rows = train.games, train.rows
    contamination = check_contamination(config, train)
    eval_rows = (split_instances(config.games, config.suite, config.eval_split, config.split_source).rows
                 if config.eval_split else {})
    for game, spec in games.items():
        players = number_of_players(spec)
        if config.player > players:
            raise PlaypenError(f"--player {config.player}: {game} has {players} player(s); "
                               f"pass a --player up to that, or games with that many players")
    for game in games:
        if not rewards.check_reward(games[game], next(row for row in train_rows.values()
                                                      if row["game_name"] == game),
                                    config.reward, config.format_reward):
            print(f"note: {game} has no programmatic player; --reward {config.reward} is checked at the first rollout")
    partners = load_partners(config, games)
    fingerprint = hashlib.sha256(json.dumps(sorted(train_rows)).encode()).hexdigest()[:16]
    record = {"format": "clemcore episodes played by the policy", "games": sorted(games), "split": config.split,
              "split_source": train.source, "instances": len(train_rows), "fingerprint": fingerprint,
              "held_out": {"split": config.eval_split, "instances": len(eval_rows)} if eval_rows else None,
              "contamination": contamination}
    facts = {"reward": {"name": config.reward, "format_reward": config.format_reward,
                        "definition": rewards.describe(config.reward, config.format_reward),
                        "source": "clemcore scores.json of each episode"},
             "partner": config.partner, "player": config.player}
    return GameEnvironment(games=games, train=train_rows, held_out=eval_rows, partners=partners, player=config.player,
                           reward=config.reward, format_reward=config.format_reward, fingerprint=fingerprint,
                           record=record, facts=facts)


def check_contamination(config, train) -> dict:
    """Refuse training instances that are in the evaluation split (what ``playpen eval`` measures) unless
    ``--allow_eval_instances``; return the manifest record of the check."""
    from playpen.api import EVAL_SPLIT, NoSuchSplit, load_split
    from playpen_tune.rl.split_instances import instance_prompt

    if config.allow_eval_instances:
        return {"checked": False, "reason": "--allow_eval_instances"}
    try:
        evaluation = load_split(config.split_source, EVAL_SPLIT)
    except NoSuchSplit:
        print(f"note: {train.source} has no split '{EVAL_SPLIT}': the training instances were not checked against "
              f"an evaluation split")
        return {"checked": False, "reason": f"{train.source} has no split '{EVAL_SPLIT}'"}
    keys = {instance_prompt(game, (experiment, task_id)) for game, experiment, task_id in evaluation.instances}
    overlap = sorted(keys & set(train.rows))
    if overlap:
        raise PlaypenError(f"{len(overlap)} of the {len(train.rows)} instances of --split {config.split} are in the "
                           f"evaluation split ({evaluation.describe()}, what playpen eval measures), "
                           f"e.g. {overlap[0]}; pass another --split, or --allow_eval_instances true to train on "
                           f"them anyway")
    return {"checked": True, "split_source": evaluation.source, "split": EVAL_SPLIT, "excluded": 0}


def load_partners(config, games: dict) -> dict:
    """``{game: [partner model] * (players - 1)}``, the partner in every role but the policy's (empty
    lists without ``--partner``): loaded once, before the policy."""
    if config.partner is None:
        return {name: [] for name in games}
    from clemcore import backends

    from playpen.api import find_model
    from playpen_tune.rl.rollout import number_of_players

    try:
        spec = find_model(config.partner, scripted=True)
        (partner,) = backends.load_models([spec], {"temperature": 0.0, "max_tokens": config.max_tokens})
    except Exception as error:  # an unknown name, and the many kinds clemcore raises for a model it cannot load
        raise PlaypenError(f"--partner {config.partner} cannot be loaded: {type(error).__name__}: {error}; "
                           f"pass a model from 'playpen list models' or programmatic") from None
    return {name: [partner] * (number_of_players(game_spec) - 1) for name, game_spec in games.items()}
