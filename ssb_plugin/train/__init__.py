"""The Axolotl side of SSB, shaped like Axolotl's own integrations.

`plugin` (SSBPlugin, its hooks), `args` (the `ssb_*` config keys), `dataset` (the dataset type's
`load`), `collator`, `trainer` + `loss` (the distillation objective), `callbacks` + `training_log`
(the machine-readable log), `selfcheck` (the alignment check of a curated set against a model),
`grpo` (the baseline's reward). Users write the short public names `ssb_plugin.SSBPlugin` and
`type: ssb_plugin.dataset`; nothing here is imported by `import ssb_plugin`.
"""
