"""stalestate: a one-player test game that fails in its own code, as clembench's wordle does with clemcore 3.7.

Its game state was written for an older clemcore: ``StaleGameState.__init__`` does not call
``GameState.__init__``, so the state has no ``outcome`` and clemcore's state setter raises
``AttributeError: 'StaleGameState' object has no attribute 'outcome'`` while every episode is set up.
"""

from clemcore.backends import Model
from clemcore.clemgame import DialogueGameMaster, GameBenchmark, GameScorer, GameSpec, Player
from clemcore.clemgame.master import GameState


class StaleGameState(GameState):
    def __init__(self, word: str):  # deliberately no super().__init__(), as games written for clemcore < 3.7
        self.word = word


class Speaker(Player):
    def _custom_response(self, context: dict) -> str:
        return "ANSWER: " + context["content"].split()[-1]


class StaleState(DialogueGameMaster):
    def __init__(self, game_spec: GameSpec, experiment: dict, player_models: list[Model]):
        super().__init__(game_spec, experiment, player_models)

    def _on_setup(self, **game_instance):
        self.state = StaleGameState(game_instance["word"])  # raises in clemcore 3.7's state setter
        self.add_player(Speaker(self.player_models[0]))

    def _parse_response(self, player: Player, response: str) -> str:
        return response

    def _advance_game(self, player: Player, parsed_response: str):
        self.state.succeed()


class StaleStateScorer(GameScorer):
    def compute_episode_scores(self, interactions: dict):
        pass


class StaleStateBenchmark(GameBenchmark):
    def create_game_master(self, experiment: dict, player_models: list[Model]) -> StaleState:
        return StaleState(self.game_spec, experiment, player_models)

    def create_game_scorer(self, experiment: dict, game_instance: dict) -> StaleStateScorer:
        return StaleStateScorer(self.game_spec.game_name, experiment, game_instance)
