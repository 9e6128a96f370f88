"""Semantic Soft Bootstrapping as tooling: grader, curation, Axolotl plugin, lm-eval tasks.

`import ssb_plugin` must stay light: Axolotl imports plugins early and the grader runs inside
lm-eval and data-loader workers. Heavy pieces (the Axolotl plugin class) load on first access.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # `plugins: [ssb_plugin.SSBPlugin]` resolves this attribute; axolotl is imported only then.
    if name == "SSBPlugin":
        from ssb_plugin.train.plugin import SSBPlugin

        return SSBPlugin
    raise AttributeError(f"module 'ssb_plugin' has no attribute {name!r}")
