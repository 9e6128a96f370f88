"""Is SSBPlugin registered with Axolotl? The dataset type asks before it tokenises a row.

Axolotl 0.19 logs a plugin that fails to import and trains on without it (0.21 stops): a curated
set would then train with Axolotl's own trainer and cross-entropy, plain SFT on the teacher's tokens,
and report success. This module imports nothing of the plugin's, so it answers when the plugin's own
module is what fails to import.
"""

from __future__ import annotations

from ssb_plugin.record import RecordError

PLUGIN = "ssb_plugin.SSBPlugin"
PLUGIN_MODULE = "ssb_plugin.train.plugin"


def _is_ssb_plugin(plugin: object) -> bool:
    return any(c.__module__ == PLUGIN_MODULE and c.__name__ == "SSBPlugin" for c in type(plugin).__mro__)


def require_registered_plugin() -> None:
    """Raise, naming the cause and the fix, unless Axolotl's plugin manager holds an SSBPlugin."""
    from axolotl.integrations.base import PluginManager

    manager = PluginManager.get_instance()
    if any(_is_ssb_plugin(p) for p in manager.plugins.values()):
        return
    try:
        __import__(PLUGIN_MODULE)  # the import Axolotl attempted: its error is the usual cause
    except Exception as exc:  # any failure here is what kept the plugin out
        raise RecordError(
            f"dataset type ssb_plugin.dataset: {PLUGIN} is not loaded, because importing {PLUGIN_MODULE} "
            f"fails ({type(exc).__name__}: {exc}); Axolotl went on without the plugin, so this run would "
            f"train plain SFT. Fix the import in the environment that runs axolotl (install ssb-plugin "
            f"there with its dependencies, `pip install ssb-plugin`, and an Axolotl version it supports)"
        ) from exc
    loaded = sorted(manager.plugins) or "none"
    raise RecordError(
        f"dataset type ssb_plugin.dataset: {PLUGIN} is not registered with Axolotl's plugin manager "
        f"(registered: {loaded}), so this run would train plain SFT. List it in the config, `plugins: "
        f"[{PLUGIN}]`, and load the config through Axolotl (`axolotl train` / `axolotl preprocess`), "
        f"which registers it"
    )
