"""Learner configs: dataclass fields filled from YAML, then from ``--<field> VALUE`` options.

This mirrors TRL's HfArgumentParser: the dataclass is the single source of knobs, the YAML
file and the command line map onto the same field names, and the command line wins. A config
may be composed of several dataclasses (groups, as TRL's scripts parse several), by inheriting
them: :func:`config_groups` tells them apart for ``--help``; YAML and options stay flat.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from playpen.errors import PlaypenError
from playpen.paths import refuse_directory

HOST_LEARN_FLAGS = ("-l", "-m", "-c", "-h", "-v")  # playpen learn's own short flags (playpen/cli.py)
TRUE_WORDS = {"true", "1", "yes", "on"}  # bool values of YAML, CLI options and environment variables
_FALSE = {"false", "0", "no", "off"}


def config_fields(config_class: type) -> dict[str, dataclasses.Field]:
    """The dataclass fields of a learner config, by name."""
    return {f.name: f for f in dataclasses.fields(config_class)}


def config_groups(config_class: type) -> list[tuple[type, list[dataclasses.Field]]]:
    """The groups a learner config is composed of: ``[(dataclass, its fields)]`` in method resolution order.

    A config composes groups by inheriting them (``class SFTConfig(DatasetConfig, PolicyConfig,
    TrainingConfig)``) and declares its own fields in its body. A field belongs to the dataclass that
    declares it first (the most basic one), so a config that changes a group's default in its body
    (``learning_rate: float = 5e-5``) keeps the field in that group. A plain dataclass is one group.
    Computed fields (``init=False``) are left out; dataclasses left without a field are not listed.
    """
    owner: dict[str, type] = {}
    for klass in reversed(config_class.__mro__):
        for name in klass.__dict__.get("__dataclass_fields__", {}):
            owner.setdefault(name, klass)
    fields = [f for f in dataclasses.fields(config_class) if f.init]
    groups = [(klass, [f for f in fields if owner[f.name] is klass]) for klass in config_class.__mro__]
    return [(klass, members) for klass, members in groups if members]


def field_aliases(config_class: type) -> dict[str, str]:
    """``{alias: field name}`` of the short options fields declare in ``metadata={"aliases": ["-g"]}``.

    An alias is ``-`` and one letter. A learner that declares one that ``playpen learn`` uses itself
    (:data:`HOST_LEARN_FLAGS`), a malformed one, or one declared by two fields is refused.
    """
    aliases: dict[str, str] = {}
    for name, f in config_fields(config_class).items():
        for alias in f.metadata.get("aliases", ()):
            if len(alias) != 2 or alias[0] != "-" or not alias[1].isalpha():
                raise PlaypenError(f"{config_class.__name__}.{name} declares the alias {alias!r}; an alias is '-' "
                                   f"and one letter, e.g. '-g'")
            if alias in HOST_LEARN_FLAGS:
                raise PlaypenError(f"{config_class.__name__}.{name} declares the alias {alias}, which playpen learn "
                                   f"uses itself ({', '.join(HOST_LEARN_FLAGS)}); choose another letter")
            if alias in aliases:
                raise PlaypenError(f"{config_class.__name__} declares the alias {alias} for both {aliases[alias]} "
                                   f"and {name}; give each field its own")
            aliases[alias] = name
    return aliases


def field_type(config_class: type, name: str) -> Any:
    """The resolved type annotation of one field (string annotations evaluated)."""
    return typing.get_type_hints(config_class)[name]


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def is_list_field(config_class: type, name: str) -> bool:
    """Whether a field holds a list (repeatable on the command line)."""
    tp, _ = _unwrap_optional(field_type(config_class, name))
    return typing.get_origin(tp) is list


def is_bool_field(config_class: type, name: str) -> bool:
    """Whether a field is a bool (``--field`` alone means true)."""
    tp, _ = _unwrap_optional(field_type(config_class, name))
    return tp is bool


def coerce(config_class: type, name: str, value: Any) -> Any:
    """Convert ``value`` (from YAML or a CLI string) to the field's declared type."""
    tp, optional = _unwrap_optional(field_type(config_class, name))
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise PlaypenError(f"--{name} needs a value; it cannot be empty")
    try:
        if typing.get_origin(tp) is list:
            (item_type,) = typing.get_args(tp) or (str,)
            items = value if isinstance(value, list) else [value]
            out = []
            for item in items:
                if isinstance(item, (dict, list)):
                    raise PlaypenError(f"--{name} expects {getattr(item_type, '__name__', item_type)} values, but one "
                                       f"entry is a YAML {'mapping' if isinstance(item, dict) else 'list'} ({item!r}); "
                                       f"write each entry as a plain value, e.g. '{name}: [a.json, b.json]'")
                # "a,b" on the command line or in YAML is a list of two
                parts = item.split(",") if isinstance(item, str) and item_type is str else [item]
                out.extend(item_type(p.strip()) if isinstance(p, str) else item_type(p) for p in parts if p != "")
            return out
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in TRUE_WORDS:
                return True
            if text in _FALSE:
                return False
            raise ValueError(value)
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            if isinstance(value, str):
                return int(value.strip())
            return int(value)
        if tp is float:
            if isinstance(value, bool) or not math.isfinite(float(value)):
                raise ValueError(value)
            return float(value)
        if tp is str:
            if isinstance(value, (dict, list)):
                raise PlaypenError(f"--{name} expects a str value, but the config gives a YAML "
                                   f"{'mapping' if isinstance(value, dict) else 'list'} ({value!r}); "
                                   f"write it as a plain value, e.g. '{name}: VALUE'")
            return str(value)
        if typing.get_origin(tp) is typing.Literal:
            choices = typing.get_args(tp)
            if value not in choices:
                raise PlaypenError(f"--{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
            return value
    except (TypeError, ValueError):
        type_name = getattr(tp, "__name__", str(tp))
        raise PlaypenError(f"--{name} expects a {type_name} value, got {value!r}; "
                           f"fix the value on the command line or in the config file") from None
    return value


def unknown_field_error(config_class: type, name: str, where: str, learner: str | None = None) -> PlaypenError:
    """An error for an unknown key that suggests the closest valid field name; with ``learner``
    (the name of ``-l``) it names the learner and where its fields are listed."""
    names = list(config_fields(config_class))
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if close:
        hint = f"did you mean '{close[0]}'?"
    elif learner:
        hint = f"{learner} has no such field"
    else:
        hint = f"valid fields: {', '.join(names)}"
    listed = f" ({learner}'s fields: playpen learn -l {learner} --help)" if learner else ""
    return PlaypenError(f"unknown config field '{name}' {where}; {hint}{listed}")


def read_yaml(path: Path) -> dict:
    """Read a YAML mapping; a missing file or bad YAML is a user error."""
    path = refuse_directory(path, "config file")
    if not path.is_file():
        raise PlaypenError(f"config file {path} does not exist; pass an existing YAML file to -c")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise PlaypenError(f"config file {path} is not valid YAML ({where}{problem}); fix its syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PlaypenError(f"config file {path} must hold a mapping of field: value, "
                           f"not a {type(data).__name__}")
    return data


def parse_overrides(config_class: type, tokens: list[str], learner: str | None = None) -> dict[str, Any]:
    """Parse ``--field VALUE`` / ``--field=VALUE`` / ``--flag`` / ``-alias VALUE`` tokens into raw values.

    Aliases are the ones fields declare (:func:`field_aliases`). List fields may repeat
    (``--dataset a --dataset b``). Unknown fields raise with a suggestion, naming ``learner`` if given.
    """
    fields = config_fields(config_class)
    aliases = field_aliases(config_class)

    def is_option(token: str) -> bool:
        return token.startswith("--") or token in aliases

    values: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in aliases:
            key, has_inline, inline = aliases[token], "", ""
        elif not token.startswith("--") or token == "--":
            shown = f"; short options of this learner: {', '.join(aliases)}" if aliases else ""
            raise PlaypenError(f"unexpected argument '{token}'; learner options look like --<field> VALUE{shown}")
        else:
            key, has_inline, inline = token[2:].partition("=")
            key = key.replace("-", "_")
        if key not in fields:
            raise unknown_field_error(config_class, key, "on the command line", learner)
        if has_inline:
            value, i = inline, i + 1
        elif is_bool_field(config_class, key) and (i + 1 == len(tokens) or is_option(tokens[i + 1])):
            value, i = "true", i + 1
        elif i + 1 < len(tokens) and not is_option(tokens[i + 1]):
            value, i = tokens[i + 1], i + 2
        else:
            raise PlaypenError(f"--{key} needs a value")
        if is_list_field(config_class, key):
            values.setdefault(key, []).append(value)
        else:
            values[key] = value
    return values


def build_config(config_class: type, yaml_values: dict | None = None, overrides: dict | None = None,
                 learner: str | None = None):
    """Instantiate ``config_class`` from YAML values, then CLI overrides (CLI wins).

    Field values are coerced to their declared types; the dataclass's ``__post_init__`` may
    raise :class:`PlaypenError` for values out of range. An unknown key names ``learner`` if given.
    """
    fields = config_fields(config_class)
    merged: dict[str, Any] = {}
    for source, where in ((yaml_values or {}, "in the config file"), (overrides or {}, "on the command line")):
        for key, value in source.items():
            if key not in fields:
                raise unknown_field_error(config_class, key, where, learner)
            if not fields[key].init:
                raise PlaypenError(f"config field '{key}' is computed and cannot be set {where}")
            merged[key] = coerce(config_class, key, value)
    return config_class(**merged)


def config_to_dict(config: Any) -> dict:
    """A JSON-friendly dict of a config dataclass (paths as strings)."""
    def convert(value):
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return {f.name: convert(getattr(config, f.name)) for f in dataclasses.fields(config)}
