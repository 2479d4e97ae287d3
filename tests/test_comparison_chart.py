"""comparison.png: base and tuned side by side per game (% played, quality) and per suite score, on
0-100 axes, readable for 1, 2 and 14 games with long names; its numbers are the val.json ones."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

LONG = "a_game_with_a_really_quite_long_name_from_a_benchmark"


def val_json(model: str, games: dict, failed: dict | None = None) -> dict:
    """A ``<model>.val.json`` document as ``playpen eval`` writes it (scores computed as summarize does)."""
    rows = {game: {"% played": played, "quality score": quality, "score": round(played * quality / 100, 2),
                   "episodes": 12} for game, (played, quality) in games.items()}
    played = sum(r["% played"] for r in rows.values()) / len(rows)
    quality = sum(r["quality score"] for r in rows.values()) / len(rows)
    return {"clemscore": round(played * quality / 100, 2), "statscore": None, "model": model, "games": rows,
            "failed_games": failed or {}, "suites": {}}


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


@pytest.mark.parametrize("count", [1, 2, 14])
def test_chart_shows_the_val_json_numbers_for_any_number_of_games(tmp_path, count):
    from playpen.comparison import write_chart
    from playpen.evaluation import ModelEvaluation

    names = [f"{LONG}_{i}" if i % 2 else f"game{i}" for i in range(count)]
    base = val_json("some-org/a-base-model-with-a-long-name",
                    {name: (50.0 + i, 10.0 * (i % 3)) for i, name in enumerate(names)})
    tuned_name = "some-org/a-base-model-with-a-long-name-sft_qlora-dpo_qlora"
    if count == 1:  # a model that did not move: equal bars on a 0-100 axis, not a magnified one
        tuned = val_json(tuned_name, {names[0]: (50.0, 0.0)})
    else:  # the last game failed for the tuned model: listed, no bar
        tuned = val_json(tuned_name, {name: (100.0 - i, 33.3) for i, name in enumerate(names[:-1])},
                         failed={names[-1]: "3 of 12 episodes were not played and scored"})
    documents = {}
    for document in (base, tuned):
        path = tmp_path / f"{document['model']}.val.json".replace("/", "_")
        path.write_text(json.dumps(document))
        documents[document["model"]] = json.loads(path.read_text())
    path = tmp_path / "comparison.png"
    drawn = write_chart(*(ModelEvaluation.from_json(documents[d["model"]]) for d in (base, tuned)), path)

    width, height = png_size(path)
    assert width == 1300 and height >= 350 and (height > 700) is (count == 14)
    for panel in ("% played", "quality score"):
        assert len(drawn[panel]["labels"]) == count
        for side, document in (("base", base), ("tuned", tuned)):
            expected = [document["games"][game][panel] if game in document["games"] else None for game in sorted(names)]
            assert drawn[panel][side] == expected, (panel, side)
    assert drawn["suite score"] == {"labels": ["clemscore"], "base": [base["clemscore"]], "tuned": [tuned["clemscore"]]}
    failed = [label for label in drawn["% played"]["labels"] if "(FAILED)" in label]
    assert len(failed) == (count > 1)


def test_chart_axes_are_fixed_and_the_title_fits(tmp_path):
    from playpen.comparison import render_chart
    from playpen.evaluation import ModelEvaluation

    base = ModelEvaluation.from_json(val_json("b" * 60, {LONG: (50.0, 0.0)}))
    tuned = ModelEvaluation.from_json(val_json("t" * 80, {LONG: (50.0, 0.0)}))
    figure, _ = render_chart(base, tuned)
    assert [ax.get_xlim() for ax in figure.axes] == [(0, 100)] * 3
    figure.canvas.draw()
    title = figure._suptitle.get_window_extent()
    assert title.x0 >= 0 and title.x1 <= figure.bbox.width  # not cut off on either side
