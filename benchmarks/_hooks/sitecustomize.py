"""Training-loop timing for ``learner_overhead.py``: put this folder on PYTHONPATH and set
PLAYPEN_BENCH_TIMING=FILE.json; Python imports this module at start-up (``sitecustomize``).

When (and only when) ``transformers.trainer`` is imported, ``Trainer.train`` is wrapped to record
its wall time (time.time() at entry and exit, so the parent can split the process wall time
into set-up / training loop / finish) and transformers' own ``train_runtime`` metric. The
same hook runs in the playpen CLI and in the hand-written TRL script, so both pay the same (tiny)
cost and are measured the same way. Nothing heavy is imported here. (Being first on PYTHONPATH,
it shadows a system-wide sitecustomize in those two subprocesses only.)
"""
import os

_TIMING_FILE = os.environ.get("PLAYPEN_BENCH_TIMING")

if _TIMING_FILE:
    import functools
    import importlib.abc
    import importlib.machinery
    import json
    import sys
    import time

    _calls = []

    def _wrap_train(trainer_class):
        original = trainer_class.train

        @functools.wraps(original)
        def train(self, *args, **kwargs):
            began_wall, began = time.time(), time.perf_counter()
            output = None
            try:
                output = original(self, *args, **kwargs)
                return output
            finally:
                metrics = getattr(output, "metrics", None) or {}
                _calls.append({"train_began_unix": began_wall, "train_ended_unix": time.time(),
                               "train_s": time.perf_counter() - began,
                               "train_runtime": metrics.get("train_runtime"),
                               "global_step": getattr(getattr(self, "state", None), "global_step", None),
                               "losses": [round(entry["loss"], 4) for entry in
                                          getattr(getattr(self, "state", None), "log_history", [])
                                          if "loss" in entry],
                               "num_tokens": next((entry["num_tokens"] for entry in reversed(
                                   getattr(getattr(self, "state", None), "log_history", [])) if "num_tokens" in entry),
                                   None),
                               "trainer_class": type(self).__name__})
                with open(_TIMING_FILE, "w") as handle:
                    json.dump({"calls": _calls}, handle)

        trainer_class.train = train

    class _TrainerFinder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "transformers.trainer":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return spec
            sys.meta_path.remove(self)
            exec_module = spec.loader.exec_module

            def exec_and_patch(module):
                exec_module(module)
                _wrap_train(module.Trainer)

            spec.loader.exec_module = exec_and_patch
            return spec

    sys.meta_path.insert(0, _TrainerFinder())
