"""relay: a tiny two-player clemgame for the test suite (multi-player episodes, successes and failures).

Rules (one episode = one game instance, one round):

* The instance names a ``target`` word and an ordered list of ``candidates`` (the target among them).
* The Game Master shows the Describer the target and the candidates; the Describer's answer is the
  clue (any non-empty text; the scripted Describer answers ``CLUE: <text>``). The Game Master passes
  the clue and the candidates to the Guesser, who answers ``GUESS: <word>``.
* An empty clue, a guess not of its form, or a guess that is not a candidate aborts the episode.
* Guessing the target wins (``Success`` = 1, ``Main Score`` = 100); another candidate loses
  (``Lose`` = 1, ``Main Score`` = 0); an aborted episode has ``Main Score`` NaN.

With the programmatic model ``mock`` the Describer says ``CLUE: the word starts with <letter>``
and the Guesser picks the first candidate starting with that letter (the first candidate when the
clue names no letter), so the scripted pair loses exactly the episodes where an earlier candidate
shares the target's first letter.
"""
import math
import re

from clemcore.backends import Model
from clemcore.clemgame import DialogueGameMaster, GameBenchmark, GameError, GameScorer, GameSpec, ParseError, Player
from clemcore.clemgame.master import Outcome
from clemcore.clemgame.metrics import BENCH_SCORE, METRIC_ABORTED, METRIC_LOSE, METRIC_SUCCESS

RULES = ("Relay game. Two players share a list of candidate words. The describer knows which one is the "
         "target and gives one short clue; the guesser reads the clue and names the target.")
CLUE_PATTERN = re.compile(r"(?s).*\S.*")  # any non-empty text
GUESS_PATTERN = re.compile(r"GUESS:[ \t]*([A-Za-z]+)")
LETTER_PATTERN = re.compile(r"starts with ([A-Za-z])")
CANDIDATES_PATTERN = re.compile(r"Candidates: (.+)")


def _candidates(prompt: str) -> list[str]:
    return CANDIDATES_PATTERN.search(prompt).group(1).split(", ")


class Describer(Player):
    """Sees the target; scripted (``mock``): names its first letter."""

    def _custom_response(self, context: dict) -> str:
        target = re.search(r"Target word: ([A-Za-z]+)", context["content"]).group(1)
        return f"CLUE: the word starts with {target[0]}"


class Guesser(Player):
    """Sees the clue; scripted (``mock``): the first candidate starting with the clue's letter."""

    def _custom_response(self, context: dict) -> str:
        candidates = _candidates(context["content"])
        letter = LETTER_PATTERN.search(context["content"].split("The describer says: ")[-1])
        # a trained Describer's clue may name no letter, or one no candidate starts with
        matching = [word for word in candidates if letter and word.startswith(letter.group(1).lower())]
        return "GUESS: " + (matching or candidates)[0]


class Relay(DialogueGameMaster):

    def __init__(self, game_spec: GameSpec, experiment: dict, player_models: list[Model]):
        super().__init__(game_spec, experiment, player_models)
        self.target = ""
        self.candidates: list[str] = []

    def _on_setup(self, **game_instance):
        self.target, self.candidates = game_instance["target"], list(game_instance["candidates"])
        self.describer = Describer(self.player_models[0])
        self.guesser = Guesser(self.player_models[1])
        self.add_player(self.describer)
        self.add_player(self.guesser)

    def _on_before_round(self):
        self.set_context_for(self.describer, f"{RULES}\nCandidates: {', '.join(self.candidates)}\n"
                                             f"Target word: {self.target}\n"
                                             "Give the guesser one clue. Answer in the form CLUE: <clue>")

    def _parse_response(self, player: Player, response: str) -> str:
        pattern = CLUE_PATTERN if player is self.describer else GUESS_PATTERN
        match = pattern.fullmatch(response.strip())
        if match is None or (player is self.guesser and match.group(1).lower() not in self.candidates):
            raise ParseError(reason=f"not a valid answer for the {player.game_role}", response=response)
        return match.group(1).lower() if player is self.guesser else response.strip()

    def _on_parse_error(self, error: ParseError):
        self.log_to_self("invalid format", error.reason)
        self.state.abort()

    def _advance_game(self, player: Player, parsed_response: str):
        if player is self.describer:
            self.set_context_for(self.guesser, f"{RULES}\nCandidates: {', '.join(self.candidates)}\n"
                                               f"The describer says: {parsed_response}\n"
                                               "Which word is the target? Answer in the form GUESS: <word>")
            return
        if parsed_response != self.target:
            raise GameError(reason=f"guessed '{parsed_response}', the target was '{self.target}'",
                            response=parsed_response)
        self.log_to_self("correct guess", parsed_response)
        self.state.succeed()

    def _on_game_error(self, error: GameError):
        self.log_to_self("wrong guess", error.reason)
        self.state.failed()

    def _on_after_game(self):
        outcome = self.state.outcome
        self.log_key(METRIC_ABORTED, int(outcome is Outcome.ABORTED))
        self.log_key(METRIC_LOSE, int(outcome is Outcome.FAILURE))
        self.log_key(METRIC_SUCCESS, int(outcome is Outcome.SUCCESS))


class RelayScorer(GameScorer):

    def compute_round_score(self, round_idx, round_events: list[dict]) -> None:
        pass

    def compute_episode_scores(self, interactions: dict):
        if interactions[METRIC_ABORTED]:
            self.log_episode_score(BENCH_SCORE, math.nan)
        else:
            self.log_episode_score(BENCH_SCORE, 100 * interactions[METRIC_SUCCESS])


class RelayBenchmark(GameBenchmark):

    def create_game_master(self, experiment: dict, player_models: list[Model]) -> Relay:
        return Relay(self.game_spec, experiment, player_models)

    def create_game_scorer(self, experiment: dict, game_instance: dict) -> RelayScorer:
        return RelayScorer(self.game_spec.game_name, experiment, game_instance)
