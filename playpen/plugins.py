"""The one PluginManager of playpen.

Plugins come from the ``playpen`` entry-point group, the built-in ``playpen_tune`` plugin
included. Set ``PLAYPEN_TRACE_PLUGINS=1`` to print every hook call and its result to stderr.
"""
from __future__ import annotations

import os
import sys

import pluggy

from playpen import hookspecs

ENTRY_POINT_GROUP = "playpen"
TRACE_ENV_VAR = "PLAYPEN_TRACE_PLUGINS"


def _trace_writer(message: str) -> None:
    sys.stderr.write(message)


def _make_plugin_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("playpen")
    manager.add_hookspecs(hookspecs)
    if os.environ.get(TRACE_ENV_VAR):
        manager.trace.root.setwriter(_trace_writer)
        manager.enable_tracing()
    manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return manager


pm = _make_plugin_manager()


def plugin_table() -> list[dict]:
    """One row per registered plugin: name, distribution, version and implemented hooks."""
    distributions = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        dist = distributions.get(id(plugin))
        rows.append({
            "name": name,
            "distribution": dist.metadata["Name"] if dist else None,
            "version": dist.version if dist else None,
            "hooks": sorted(caller.name for caller in pm.get_hookcallers(plugin) or []),
        })
    return rows
