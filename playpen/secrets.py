"""Keep secrets out of files playpen writes (manifests, eval settings, logs).

Anything named like a credential (``token``, ``key``, ``secret``, ``password``) is dropped from
mappings and redacted from command lines before they are written. Token counts are not credentials:
``max_tokens``, ``max_new_tokens`` and ``num_tokens`` (a learner's turn length, a generation setting)
are kept.
"""
from __future__ import annotations

import re

SECRET_NAME = re.compile(r"(?<!max_)(?<!max_new_)(?<!num_)token|key|secret|password", re.IGNORECASE)


def without_secrets(value):
    """A copy of ``value`` (nested dicts/lists) without keys that look like credentials."""
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items() if not SECRET_NAME.search(str(k))}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


def redact_command_line(argv: list[str]) -> list[str]:
    """The command line with values of credential-like options (``--hub_token X``) replaced."""
    out, hide_next = [], False
    for token in argv:
        if hide_next:
            out.append("<redacted>")
            hide_next = False
            continue
        name, has_value, _ = token.partition("=")
        if token.startswith("--") and SECRET_NAME.search(name):
            if has_value:
                out.append(f"{name}=<redacted>")
            else:
                out.append(token)
                hide_next = True
        else:
            out.append(token)
    return out
