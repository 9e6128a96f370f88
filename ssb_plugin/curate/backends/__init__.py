"""Generation backends: the same requests in, token ids (+ raw top-k log-probs) out.

A backend samples each request with its own seed, so a request's result does not depend on what
else is in the batch, and returns, for requests that ask for it, the top-k token ids and log-probs
of the model's raw (temperature-1) distribution at every generated position, taken from the same
pass that sampled the token.
"""

from __future__ import annotations

from ssb_plugin.curate.backends.contract import Generation, Request, derive_seed

__all__ = ["Generation", "Request", "backend_class", "derive_seed", "make_backend", "vllm_available"]


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def backend_class(cfg) -> type:
    """The class of the configured backend (`cfg.backend` resolved); importing it loads no engine."""
    if cfg.backend == "vllm":
        from ssb_plugin.curate.backends.vllm import VLLMBackend

        return VLLMBackend
    from ssb_plugin.curate.backends.hf import TransformersBackend

    return TransformersBackend


def make_backend(cfg, model: str):
    """Build the configured backend (`cfg.backend` already resolved to 'vllm' or 'transformers')."""
    return backend_class(cfg)(cfg, model)
