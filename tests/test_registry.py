"""./model_registry.json writes: byte-preserving, idempotent, atomic, locked, crash-safe."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from playpen import files, registry
from playpen.errors import PlaypenError

HAND_WRITTEN = """[
    {"model_name": "gpt-x",   "backend": "openai",
     "model_config": {"eos_to_cull": "<\\\\|eot_id\\\\|>"}},

    {
        "model_name": "hand-edited", "backend": "huggingface_local", "huggingface_id": "org/model"
    }
]
"""


def entry(name: str, **extra) -> dict:
    return {"model_name": name, "backend": "playpen_qlora", "huggingface_id": "org/base", **extra}


def test_append_keeps_other_entries_byte_for_byte(tmp_path):
    path = tmp_path / "model_registry.json"
    path.write_text(HAND_WRITTEN)
    assert registry.upsert_entry(entry("tuned"), path) == "added"
    text = path.read_text()
    assert text.startswith(HAND_WRITTEN[:HAND_WRITTEN.rindex("}") + 1])  # old bytes untouched
    names = [e["model_name"] for e in json.loads(text)]
    assert names == ["gpt-x", "hand-edited", "tuned"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_registry.json"]  # an append: no .bak, no lock file


def test_replace_by_name_is_idempotent_and_in_place(tmp_path):
    path = tmp_path / "model_registry.json"
    path.write_text(HAND_WRITTEN)
    registry.upsert_entry(entry("tuned", parameters="1B"), path)
    registry.upsert_entry(entry("last"), path)
    before_replace = path.read_text()
    assert registry.upsert_entry(entry("tuned", parameters="2B"), path) == "replaced"
    assert (tmp_path / "model_registry.json.bak").read_text() == before_replace  # what the replace changed
    assert registry.upsert_entry(entry("tuned", parameters="2B"), path) == "unchanged"
    entries = json.loads(path.read_text())
    assert [e["model_name"] for e in entries] == ["gpt-x", "hand-edited", "tuned", "last"]
    assert entries[2]["parameters"] == "2B"
    assert path.read_text().startswith(HAND_WRITTEN[:HAND_WRITTEN.rindex("}") + 1])


def test_creates_missing_file(tmp_path):
    path = tmp_path / "model_registry.json"
    assert registry.upsert_entry(entry("tuned"), path) == "added"
    assert json.loads(path.read_text()) == [entry("tuned")]


def test_exception_mid_write_leaves_file_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "model_registry.json"
    path.write_text(HAND_WRITTEN)

    calls = []

    def fsync_failing_on_the_registry_write(fd):
        calls.append(fd)
        if len(calls) == 3:  # 1: model_registry.json.bak, 2: its directory, 3: model_registry.json
            raise OSError("disk full")

    registry.upsert_entry(entry("tuned", parameters="1B"), path)
    before = path.read_text()
    monkeypatch.setattr(files.os, "fsync", fsync_failing_on_the_registry_write)
    with pytest.raises(OSError, match="disk full"):
        registry.upsert_entry(entry("tuned", parameters="2B"), path)  # a replace: the old file goes to .bak first
    assert path.read_text() == before
    assert len(calls) == 3
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["model_registry.json", "model_registry.json.bak"]  # no temp or lock file left


def test_new_files_get_the_usual_mode(tmp_path):
    old_umask = os.umask(0o022)
    try:
        registry.upsert_entry(entry("tuned"), tmp_path / "model_registry.json")
    finally:
        os.umask(old_umask)
    assert (tmp_path / "model_registry.json").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("content, message", [
    ("[{\"model_name\": \"a\",}]", "is not valid JSON"),
    ("{\"model_name\": \"a\"}", "must hold a JSON list"),
])
def test_corrupt_registry_is_refused_not_overwritten(tmp_path, content, message):
    path = tmp_path / "model_registry.json"
    path.write_text(content)
    with pytest.raises(PlaypenError, match=message):
        registry.upsert_entry(entry("tuned"), path)
    assert path.read_text() == content


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "-x", "a b", ""])
def test_names_that_could_escape_a_directory_are_refused(name):
    with pytest.raises(PlaypenError, match="is not allowed"):
        registry.validate_model_name(name)


WRITER = """
import sys
from playpen import registry
path = sys.argv[1]
print("writing", flush=True)
for i in range(1000000):
    registry.upsert_entry({"model_name": "tuned", "backend": "playpen_qlora", "step": i,
                           "payload": "x" * 20000}, path)
"""


# the same writer with the registry's atomic write swapped for an in-place one (truncate, then
# write in pieces): the control that shows the harness below can see a torn file
NON_ATOMIC_WRITER = """
from playpen import files

def in_place(path, text):
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, len(text), 4096):
            f.write(text[start:start + 4096])
            f.flush()

files.atomic_write_text = in_place
""" + WRITER


def corruption(path: Path) -> str | None:
    """What is wrong with the registry after a killed write (None: a complete old or new file)."""
    try:
        entries = json.loads(path.read_text())
    except ValueError as error:
        return f"not valid JSON: {error}"
    if [e.get("model_name") for e in entries][:2] != ["gpt-x", "hand-edited"]:
        return "the hand-written entries are gone"
    if not path.read_text().startswith(HAND_WRITTEN[:HAND_WRITTEN.rindex("}") + 1]):
        return "the hand-written bytes changed"
    if len(entries) == 3 and entries[2].get("payload") != "x" * 20000:
        return "the new entry is partial"
    return None


def kill_during_writes(path: Path, writer: str, trials: int = 60):
    """Start ``writer`` (rewrites ``path`` in a loop), SIGKILL it at a random point of its loop,
    ``trials`` times; yield :func:`corruption` after each kill."""
    path.write_text(HAND_WRITTEN)
    rng = random.Random(0)
    for _ in range(trials):
        proc = subprocess.Popen([sys.executable, "-c", writer, str(path)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        assert proc.stdout.readline() == b"writing\n"  # started: the kill lands in the loop, not in start-up
        time.sleep(0.05 + rng.random() * 0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        yield corruption(path)


def test_sigkill_during_writes_never_corrupts_the_file(tmp_path):
    """Kill a process that rewrites the registry in a loop, 60 times at random points."""
    path = tmp_path / "model_registry.json"
    assert list(kill_during_writes(path, WRITER)) == [None] * 60
    assert len(json.loads(path.read_text())) == 3  # some writes landed


def test_sigkill_harness_catches_a_non_atomic_writer(tmp_path):
    """The harness above is able to fail: with an in-place writer it finds a torn file."""
    assert any(kill_during_writes(tmp_path / "model_registry.json", NON_ATOMIC_WRITER))


CONCURRENT = """
import sys
from playpen import registry
for i in range(25):
    registry.upsert_entry({"model_name": f"{sys.argv[2]}-{i}", "backend": "playpen_qlora"}, sys.argv[1])
"""


def test_concurrent_writers_all_land(tmp_path):
    path = tmp_path / "model_registry.json"
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(path), tag]) for tag in "abc"]
    assert [p.wait() for p in procs] == [0, 0, 0]
    names = {e["model_name"] for e in json.loads(path.read_text())}
    assert names == {f"{tag}-{i}" for tag in "abc" for i in range(25)}
