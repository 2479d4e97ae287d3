"""The one PluginManager of playpen.

Plugins come from the ``playpen`` entry-point group, the built-in ``playpen_tune`` plugin
included. A plugin that cannot be loaded is reported on stderr and skipped, so one broken
package does not break every command; an implementation of a hook nobody declares is reported
too. Set ``PLAYPEN_TRACE_PLUGINS=1`` to print every hook call and its result to stderr.
"""
from __future__ import annotations

import os
import sys
from importlib.metadata import Distribution, EntryPoint, entry_points

import pluggy

from playpen import hookspecs

ENTRY_POINT_GROUP = "playpen"
TRACE_ENV_VAR = "PLAYPEN_TRACE_PLUGINS"


def _trace_writer(message: str) -> None:
    sys.stderr.write(message)


def _skipped(ep: EntryPoint, error: Exception) -> None:
    origin = f"{ep.dist.metadata['Name']} {ep.dist.version}" if ep.dist else "unknown distribution"
    reason = " ".join(str(error).split())  # one line, whatever the message
    print(f"warning: plugin {ep.name} ({origin}) cannot be loaded: {type(error).__name__}: {reason}; skipped",
          file=sys.stderr)


def _load_entry_point_plugins(manager: pluggy.PluginManager) -> dict[str, Distribution | None]:
    """Register the ``playpen`` entry points; return plugin name -> distribution.

    A plugin whose import or registration fails gets a one-line warning and is skipped. Plugins that
    declare hookspecs of their own (``playpen_add_hookspecs``) are registered first, so that every
    implementation of those hooks is checked against its spec when its own plugin registers.
    """
    loaded: list[tuple[EntryPoint, object]] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if manager.has_plugin(ep.name) or manager.is_blocked(ep.name):
            continue
        try:
            loaded.append((ep, ep.load()))
        except Exception as error:  # a broken module may raise anything while importing
            _skipped(ep, error)
    loaded.sort(key=lambda item: not hasattr(item[1], "playpen_add_hookspecs"))  # stable: else entry-point order
    distributions: dict[str, Distribution | None] = {}
    for ep, plugin in loaded:
        try:
            manager.register(plugin, name=ep.name)
        except Exception as error:
            if manager.has_plugin(ep.name):  # registered, then a hook failed validation
                manager.unregister(name=ep.name)
            _skipped(ep, error)
            continue
        distributions[ep.name] = ep.dist
    return distributions


def _warn_undeclared_hooks(manager: pluggy.PluginManager) -> None:
    """One warning per implementation of a hook no plugin declares (misspelt, or removed such as
    ``playpen_register_learners``): nothing would ever call it, and that must not go unnoticed."""
    for name, caller in sorted(vars(manager.hook).items()):
        if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
            continue
        for implementation in caller.get_hookimpls():
            if not implementation.optionalhook:
                print(f"warning: plugin {implementation.plugin_name} implements {name}, a hook that neither playpen "
                      f"nor a plugin declares, so it is never called; see playpen/hookspecs.py (learners are "
                      f"published as 'playpen.learners' entry points)", file=sys.stderr)


def _make_plugin_manager() -> tuple[pluggy.PluginManager, dict[str, Distribution | None]]:
    manager = pluggy.PluginManager("playpen")
    manager.add_hookspecs(hookspecs)
    manager.hook.playpen_add_hookspecs.call_historic(kwargs={"plugin_manager": manager})
    if os.environ.get(TRACE_ENV_VAR):
        manager.trace.root.setwriter(_trace_writer)
        manager.enable_tracing()
    distributions = _load_entry_point_plugins(manager)
    _warn_undeclared_hooks(manager)
    return manager, distributions


pm, _distributions = _make_plugin_manager()


def plugin_table() -> list[dict]:
    """One row per registered plugin: name, distribution, version and implemented hooks."""
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        dist = _distributions.get(name)
        rows.append({
            "name": name,
            "distribution": dist.metadata["Name"] if dist else None,
            "version": dist.version if dist else None,
            "hooks": sorted(caller.name for caller in pm.get_hookcallers(plugin) or []),
        })
    return rows
