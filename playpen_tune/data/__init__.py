"""Training data for the learners: local files, Hub datasets and clemcore game transcripts."""

from playpen_tune.data.files import check_columns, read_json, read_rows
from playpen_tune.data.hub import load_hub_dataset
from playpen_tune.data.preferences import preference_pairs
from playpen_tune.data.sources import DataReport, load_preference_dataset, load_sft_dataset, source_kind
from playpen_tune.data.transcripts import conversations_from_episode, episode_records

__all__ = [
    "DataReport",
    "check_columns",
    "conversations_from_episode",
    "episode_records",
    "load_hub_dataset",
    "load_preference_dataset",
    "load_sft_dataset",
    "preference_pairs",
    "read_json",
    "read_rows",
    "source_kind",
]
