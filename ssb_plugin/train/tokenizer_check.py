"""The training tokenizer against the curated set's: identical, or the curated one plus appended tokens.

A config's `special_tokens` / `tokens` (e.g. Axolotl's own examples set `pad_token`) append tokens
after the vocabulary. That changes no existing id, so the stored `response_ids` and teacher top-k ids
keep their meaning; such a tokenizer is accepted with a warning naming the new tokens (why it is safe:
docs/training.md, "Tokens added by the config"). Anything else that changes the vocabulary (an id
renamed by `added_tokens_overrides`, another tokenizer at `base_model`) or the chat template is refused,
naming what the config changed.
"""

from __future__ import annotations

import logging
from typing import Any

from ssb_plugin.record import (
    Manifest,
    RecordError,
    check_tokenizer,
    sorted_vocab,
    tokenizer_fingerprint,
    vocab_sha256,
)
from ssb_plugin.train.config_value import cfg_value

LOG = logging.getLogger("ssb_plugin.tokenizer")


def appended_tokens(tokenizer, curated_vocab_sha256: str | None) -> list[tuple[str, int]] | None:
    """The (token, id) pairs after the curated vocabulary when the training vocabulary is the curated
    one with tokens appended at its end; None when it differs otherwise.

    The manifest keeps only a hash of the curated vocabulary, so each cut point among the added tokens
    (the only ones a config can append) is tried: the prefix below the cut must hash to the manifest's.
    """
    pairs = sorted_vocab(tokenizer)
    n_added = len(tokenizer.get_added_vocab())
    for cut in range(len(pairs), max(len(pairs) - n_added, 0) - 1, -1):
        if vocab_sha256(pairs[:cut]) == curated_vocab_sha256:
            return pairs[cut:]
    return None


def config_token_changes(cfg: Any, tokenizer) -> list[str]:
    """What the Axolotl config adds to or changes in the tokenizer, each with the id it now has."""

    def where(token: str) -> str:
        tid = tokenizer.convert_tokens_to_ids(token)
        return f"{token!r} (id {tid})" if isinstance(tid, int) else repr(token)

    changes = []
    special = cfg_value(cfg, "special_tokens") or {}
    for key, value in dict(special).items():
        values = value if isinstance(value, list) else [value]
        changes += [f"special_tokens.{key}: {where(str(v))}" for v in values if v is not None]
    changes += [f"tokens: {where(str(t))}" for t in cfg_value(cfg, "tokens") or []]
    for tid, token in dict(cfg_value(cfg, "added_tokens_overrides") or {}).items():
        changes.append(f"added_tokens_overrides: id {tid} renamed to {token!r}")
    return changes


def check_training_tokenizer(
    tokenizer, manifest: Manifest, *, cfg: Any = None, source: str = "the curated set"
) -> list[tuple[str, int]]:
    """Refuse (RecordError) a tokenizer that would re-interpret the stored ids; return the appended
    tokens it accepted (empty when the vocabulary is the curated one)."""
    got = tokenizer_fingerprint(tokenizer)
    want = manifest.tokenizer
    template_differs = got["chat_template_sha256"] != want.get("chat_template_sha256")
    if template_differs or got["vocab_sha256"] == want.get("vocab_sha256"):
        check_tokenizer(tokenizer, manifest)  # raises the chat-template refusal, or passes
        return []
    appended = appended_tokens(tokenizer, want.get("vocab_sha256"))
    changes = config_token_changes(cfg, tokenizer)
    if appended is None:
        raise RecordError(_vocab_refusal(manifest, source, len(tokenizer.get_vocab()), changes))
    LOG.warning(
        "SSB: the training tokenizer appends %d token(s) after the vocabulary %s was curated with: %s "
        "(config: %s). Accepted: no existing id changes, the stored teacher ids never name the new ids, "
        "and the distillation loss drives their probability towards 0 (docs/training.md, "
        '"Tokens added by the config").',
        len(appended),
        source,
        ", ".join(f"{t!r} (id {i})" for t, i in appended),
        "; ".join(changes) or "no special_tokens/tokens keys: the tokenizer at base_model itself",
    )
    return appended


def _vocab_refusal(manifest: Manifest, source: str, size: int, changes: list[str]) -> str:
    if changes:
        cause = (
            "Tokens this config adds or changes: "
            + "; ".join(changes)
            + ". Tokens appended after the curated vocabulary would be accepted, but here existing ids "
            "changed too (a renamed id, or a different tokenizer underneath)."
        )
    else:
        cause = (
            "This config adds or changes no tokens (special_tokens, tokens, added_tokens_overrides), so the "
            "tokenizer of base_model/tokenizer_config itself differs from the curating one."
        )
    return (
        f"the training tokenizer's vocabulary differs from the curated set's ({source}, curated with "
        f"{manifest.model!r}; training vocabulary: {size} tokens), beyond tokens appended at its end. "
        f"{cause} Train with the tokenizer the set was curated with, or re-curate with the training "
        f"tokenizer."
    )
