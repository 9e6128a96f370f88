"""Public name of the Axolotl dataset type: `type: ssb_plugin.dataset` calls this module's `load`.

The implementation lives in `ssb_plugin.train.dataset`; this name stays because users write it.
"""

from ssb_plugin.train.dataset import load

__all__ = ["load"]
