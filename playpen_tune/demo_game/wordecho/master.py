"""wordecho: a tiny single-player clemgame for demos and tests.

Rules (one episode = one game instance):

* The instance lists ``target_words`` (two in the shipped instances); each word is one round.
* Round ``i``: the Game Master sends ``Say the word: <target_words[i]>`` (the first round is
  prefixed by the experiment's ``initial_prompt``, which states the answer format).
* The player must answer exactly ``ANSWER: <word>`` (surrounding whitespace is ignored, the word
  is compared case-insensitively).
* A response not of that form aborts the episode (``Aborted`` = 1, ``Main Score`` = NaN).
* A well-formed answer with the wrong word ends the episode as lost (``Lose`` = 1).
* Echoing every word wins (``Success`` = 1).
* ``Main Score`` (0-100) = 100 * correctly echoed words / number of words, for episodes that were
  not aborted; so a perfect player gets 100 and a player that fails round 2 of 2 gets 50.

Players run with a programmatic model (clemcore's ``mock`` or ``programmatic``) answer through
``Echoer._custom_response``, the expert, which always echoes the requested word.
"""
import math
import re

from clemcore.backends import Model
from clemcore.clemgame import DialogueGameMaster, GameBenchmark, GameError, GameScorer, GameSpec, ParseError, Player
from clemcore.clemgame.master import Outcome
from clemcore.clemgame.metrics import BENCH_SCORE, METRIC_ABORTED, METRIC_LOSE, METRIC_SUCCESS

ANSWER_PATTERN = re.compile(r"ANSWER:[ \t]*([A-Za-z]+)")
REQUEST_PATTERN = re.compile(r"Say the word: ([A-Za-z]+)")

# GM -> GM event types written to interactions.json (read back by the scorer)
EVENT_CORRECT = "correct word"
EVENT_WRONG = "wrong word"
EVENT_INVALID = "invalid format"

KEY_CORRECT_WORDS = "Correct Words"  # interactions.json key and episode score


def parse_answer(response: str) -> str:
    """Return the lower-cased word of a well-formed ``ANSWER: <word>`` response.

    Raises:
        ParseError: the response is not exactly ``ANSWER: <word>`` (whitespace around it is ignored).
    """
    match = ANSWER_PATTERN.fullmatch(response.strip())
    if match is None:
        raise ParseError(reason="response is not of the form 'ANSWER: <word>'", response=response)
    return match.group(1).lower()


def expert_answer(prompt: str) -> str:
    """The perfect response to a Game Master prompt: echo the last requested word."""
    requested = REQUEST_PATTERN.findall(prompt)
    if not requested:
        raise ValueError(f"no 'Say the word: <word>' request in prompt: {prompt!r}")
    return f"ANSWER: {requested[-1]}"


class Echoer(Player):
    """The only role. With a programmatic model (``mock``) it plays as the scripted expert."""

    def _custom_response(self, context: dict) -> str:
        return expert_answer(context["content"])


class WordEcho(DialogueGameMaster):

    def __init__(self, game_spec: GameSpec, experiment: dict, player_models: list[Model]):
        super().__init__(game_spec, experiment, player_models)
        self.target_words: list[str] = []
        self.correct_words = 0
        self.echoer: Echoer | None = None

    def _on_setup(self, **game_instance):
        self.target_words = [word.lower() for word in game_instance["target_words"]]
        if not self.target_words:
            raise ValueError("a wordecho instance needs at least one target word")
        self.correct_words = 0
        self.echoer = Echoer(self.player_models[0])
        self.add_player(self.echoer)

    def _round_prompt(self) -> str:
        word = self.target_words[self.current_round]
        prompt = self.experiment["round_prompt"].replace("$WORD$", word)
        if self.current_round == 0:
            prompt = self.experiment["initial_prompt"] + "\n" + prompt
        return prompt

    def _on_before_round(self):
        self.set_context_for(self.echoer, self._round_prompt())

    def _parse_response(self, player: Player, response: str) -> str:
        return parse_answer(response)

    def _on_parse_error(self, error: ParseError):
        self.log_to_self(EVENT_INVALID, error.reason)
        self.state.abort()

    def _advance_game(self, player: Player, parsed_response: str):
        target = self.target_words[self.current_round]
        if parsed_response != target:
            raise GameError(reason=f"expected '{target}' but got '{parsed_response}'", response=parsed_response)
        self.correct_words += 1
        self.log_to_self(EVENT_CORRECT, parsed_response)
        if self.current_round == len(self.target_words) - 1:
            self.state.succeed()

    def _on_game_error(self, error: GameError):
        self.log_to_self(EVENT_WRONG, error.reason)
        self.state.failed()

    def _on_after_game(self):
        outcome = self.state.outcome
        self.log_key(METRIC_ABORTED, int(outcome is Outcome.ABORTED))
        self.log_key(METRIC_LOSE, int(outcome is Outcome.FAILURE))
        self.log_key(METRIC_SUCCESS, int(outcome is Outcome.SUCCESS))
        self.log_key(KEY_CORRECT_WORDS, self.correct_words)


class WordEchoScorer(GameScorer):

    def compute_round_score(self, round_idx, round_events: list[dict]) -> None:
        correct = any(event["action"]["type"] == EVENT_CORRECT for event in round_events)
        self.log_round_score(round_idx, "Accuracy", int(correct))

    def compute_episode_scores(self, interactions: dict):
        n_words = len(self.game_instance["target_words"])
        correct = interactions[KEY_CORRECT_WORDS]
        self.log_episode_score(KEY_CORRECT_WORDS, correct)
        if interactions[METRIC_ABORTED]:
            self.log_episode_score(BENCH_SCORE, math.nan)  # clemcore convention for aborted episodes
        else:
            self.log_episode_score(BENCH_SCORE, 100 * correct / n_words)


class WordEchoBenchmark(GameBenchmark):

    def create_game_master(self, experiment: dict, player_models: list[Model]) -> WordEcho:
        return WordEcho(self.game_spec, experiment, player_models)

    def create_game_scorer(self, experiment: dict, game_instance: dict) -> WordEchoScorer:
        return WordEchoScorer(self.game_spec.game_name, experiment, game_instance)
