"""parity: a one-player clemgame for the test suite whose outcome a random model hits about half of the time.

Rules (one episode = one game instance of ``rounds`` rounds):

* Each round the Game Master asks for an answer (the first round's message starts with the experiment's
  ``initial_prompt``); any non-empty answer is valid, an empty one aborts the episode.
* An answer with an even number of characters (surrounding whitespace ignored) scores the round.
* Scoring every round wins (``Success`` = 1), otherwise the episode is lost (``Lose`` = 1).
* ``Main Score`` = 100 * scored rounds / rounds (NaN for an aborted episode).

A randomly initialised tiny model sampling at temperature 1 gives answers of random length, so the branches of
one turn (``playpen play --branching``, clemcore's branching runner) end with different scores; the scripted
player (``mock``) answers ``even`` and wins every episode.
"""
import math

from clemcore.backends import Model
from clemcore.clemgame import DialogueGameMaster, GameBenchmark, GameScorer, GameSpec, ParseError, Player
from clemcore.clemgame.master import Outcome
from clemcore.clemgame.metrics import BENCH_SCORE, METRIC_ABORTED, METRIC_LOSE, METRIC_SUCCESS

KEY_SCORED = "Scored Rounds"


class Answerer(Player):

    def _custom_response(self, context: dict) -> str:
        return "even"


class Parity(DialogueGameMaster):

    def __init__(self, game_spec: GameSpec, experiment: dict, player_models: list[Model]):
        super().__init__(game_spec, experiment, player_models)
        self.rounds = 0
        self.scored = 0

    def _on_setup(self, **game_instance):
        self.rounds, self.scored = game_instance["rounds"], 0
        self.answerer = Answerer(self.player_models[0])
        self.add_player(self.answerer)

    def _on_before_round(self):
        prompt = f"Round {self.current_round + 1}: answer with any text."
        if self.current_round == 0:
            prompt = self.experiment["initial_prompt"] + "\n" + prompt
        self.set_context_for(self.answerer, prompt)

    def _parse_response(self, player: Player, response: str) -> str:
        if not response.strip():
            raise ParseError(reason="empty answer", response=response)
        return response.strip()

    def _on_parse_error(self, error: ParseError):
        self.log_to_self("invalid format", error.reason)
        self.state.abort()

    def _advance_game(self, player: Player, parsed_response: str):
        even = len(parsed_response) % 2 == 0
        self.scored += int(even)
        self.log_to_self("round scored" if even else "round missed", str(len(parsed_response)))
        if self.current_round == self.rounds - 1:
            if self.scored == self.rounds:
                self.state.succeed()
            else:
                self.state.failed()

    def _on_after_game(self):
        outcome = self.state.outcome
        self.log_key(METRIC_ABORTED, int(outcome is Outcome.ABORTED))
        self.log_key(METRIC_LOSE, int(outcome is Outcome.FAILURE))
        self.log_key(METRIC_SUCCESS, int(outcome is Outcome.SUCCESS))
        self.log_key(KEY_SCORED, self.scored)


class ParityScorer(GameScorer):

    def compute_round_score(self, round_idx, round_events: list[dict]) -> None:
        pass

    def compute_episode_scores(self, interactions: dict):
        if interactions[METRIC_ABORTED]:
            self.log_episode_score(BENCH_SCORE, math.nan)
        else:
            self.log_episode_score(BENCH_SCORE, 100 * interactions[KEY_SCORED] / self.game_instance["rounds"])


class ParityBenchmark(GameBenchmark):

    def create_game_master(self, experiment: dict, player_models: list[Model]) -> Parity:
        return Parity(self.game_spec, experiment, player_models)

    def create_game_scorer(self, experiment: dict, game_instance: dict) -> ParityScorer:
        return ParityScorer(self.game_spec.game_name, experiment, game_instance)
