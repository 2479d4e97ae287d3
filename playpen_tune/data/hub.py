"""Load datasets from the Hugging Face Hub, failing fast with a clear message when offline."""

import datasets
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

from playpen.api import PlaypenError, offline_if_requested


def load_hub_dataset(dataset_id: str, split: str = "train") -> datasets.Dataset:
    """Load one split of a Hub dataset (from the local cache when offline).

    HF_HUB_OFFLINE / HF_DATASETS_OFFLINE are read at call time, so setting them after
    ``datasets`` was imported still avoids network retries.
    """
    try:
        with offline_if_requested():
            return datasets.load_dataset(dataset_id, split=split)
    except (ConnectionError, OfflineModeIsEnabled, LocalEntryNotFoundError) as error:
        raise PlaypenError(
            f"cannot load dataset '{dataset_id}': the Hugging Face Hub is unreachable "
            f"({type(error).__name__}) and the dataset is not cached; "
            "save it as a local .json/.jsonl file and pass that path instead"
        ) from None
    except DatasetNotFoundError:
        raise PlaypenError(
            f"'{dataset_id}' is not a local .json/.jsonl file, a results directory or a Hub dataset; "
            "check the path or dataset id"
        ) from None
    except ValueError as error:  # e.g. an unknown split
        raise PlaypenError(f"cannot load dataset '{dataset_id}' split '{split}': {error}") from None
