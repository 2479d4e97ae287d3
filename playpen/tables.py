"""Name tables of plugin contributions (learners, backends, data sources, eval suites): merged from
entry points and hooks without letting one name be declared twice, and the import of a
``"package.module:attr"`` target."""
from __future__ import annotations

import importlib

from playpen.errors import PlaypenError


def add_unique(table: dict, name: str, target, what: str) -> None:
    """Set ``table[name] = target``; a different target already there is an error naming both."""
    if name in table and table[name] != target:
        raise PlaypenError(f"{what} '{name}' is declared twice ({table[name]} and {target}); "
                           f"uninstall one of the packages")
    table[name] = target


def load_target(target: str):
    """The object an import string ``"package.module:attr"`` names (``attr`` may be dotted)."""
    module_name, _, attr = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
