"""The hooks the built-in plugin declares and calls itself (added by its ``playpen_add_hookspecs``).

``--dataset`` is read by this plugin's learners, not by the host, so the extension point for more kinds of
data sources lives here, next to the table of readers that calls it (:mod:`playpen_tune.data.readers`).
"""
from __future__ import annotations

from playpen.api import hookspec


@hookspec
def playpen_register_data_sources():
    """Contribute kinds of ``--dataset`` sources that the built-in learners read rows from.

    Return ``{kind: reader}``; ``reader.claims(source) -> bool`` says whether a ``--dataset``
    value is of this kind (plugin readers are asked before the built-in ``file``, ``hub`` and
    ``transcripts``), ``reader.read(source, split, column_sets) -> (name, rows)`` returns a name
    for messages and the rows (dicts holding all columns of one of ``column_sets``, e.g.
    ``("messages",)`` for SFT). See :mod:`playpen_tune.data.readers`. A kind declared twice is an error.
    """
