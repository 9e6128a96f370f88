"""On PYTHONPATH, makes `ssb_plugin.train.plugin` fail to import (ImportError) in that process and its
children, the way a broken install or an incompatible Axolotl makes it fail. Axolotl 0.19 logs a
plugin that fails to import and trains on without it; the dataset type must then refuse."""

import sys
from importlib.abc import MetaPathFinder

BLOCKED = "ssb_plugin.train.plugin"


class _Blocked(MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == BLOCKED:
            raise ImportError(f"{BLOCKED} is made to fail by tests/support/plugin_import_fails")
        return None


sys.meta_path.insert(0, _Blocked())
