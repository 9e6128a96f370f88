"""The curated record: schema, manifest, tokenizer fingerprint and the alignment contract.

This is the one module that defines what `ssb-curate` writes and what the Axolotl dataset type
reads (docs/design.md, "The record"). Both sides import it; nothing else restates the layout.

Alignment contract: student input = chat_prompt_ids(student_messages) + response_ids. With a prompt
of P tokens, the logits at position P-1+j predict response_ids[j], so teacher row j (top-k, tail,
log-normaliser) is the target at position P-1+j.

The teacher target per answer token (docs/training.md, "The objective"; computed by
ssb_plugin.curate.targets, read by ssb_plugin.train.targets): the top `stored_topk` ids and raw
log-probs, `teacher_log_norm` = logsumexp(raw log-probs / T) for each T in manifest.target
["temperatures"], and `tail_samples` tail ids (with raw log-probs) sampled from the teacher's
tail. Schema-1 sets have only the top-k (a manifest without `target`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2  # 2: the faithful target fields (Need.TARGET columns, Manifest.target)
MANIFEST_FILE = "manifest.json"
SHARD_GLOB = "data/*.parquet"  # the shards of a set, as load_dataset(<dir>) and the shard check find them


class Outcome(StrEnum):
    """What became of a problem: counted by curation and reported in the manifest (each lands in one)."""

    KEPT = "kept"
    BAD_INPUT = "bad_input"
    NO_CORRECT = "no_correct"
    NO_WRONG = "no_wrong"
    NO_BOXED_ANSWER = "no_boxed_answer"
    TEACHER_WRONG = "teacher_wrong"
    LEAK_FILTERED = "leak_filtered"
    TOO_LONG = "too_long"


OUTCOMES = tuple(Outcome)  # in report order


class TeacherMode(StrEnum):
    """Where training's teacher target comes from (`ssb_teacher`)."""

    STORED = "stored"  # the curated target columns
    ONLINE = "online"  # the teacher recomputed each step from teacher_messages + response_ids


class TargetKind(StrEnum):
    """The manifest's `target.kind`: how the stored target columns are read."""

    TOPK_TAIL = "topk+tail"  # top-k, log-normalisers and sampled tail (ssb_plugin.curate.targets)
    RENORMALISED = "renormalised-topk"  # top-k only (sets without `target`), renormalised at T
    NONE = "none"  # no stored target: a set for the online teacher only


class Need(StrEnum):
    """Who reads a column: what `validate_record` demands of a row."""

    ALWAYS = "always"  # either teacher (the prompts and the answer ids)
    STORED = "stored"  # the stored teacher: its top-k
    TARGET = "target"  # "topk+tail" sets: checked when present, absent in schema-1 sets
    PROVENANCE = "provenance"  # written for people and audits; training does not read it


@dataclass(frozen=True)
class Column:
    """One column of a curated shard. `type`: a scalar dtype, "int32[]" (one per answer token),
    "<dtype>[][]" ([R][width] per answer position), "messages" (a chat) or "rollouts"."""

    name: str
    type: str
    need: Need

    @property
    def nested(self) -> bool:
        return self.type.endswith("[][]")

    @property
    def dtype(self) -> str:
        """The element dtype of a numeric column ("int32", "float32")."""
        return self.type.removesuffix("[][]").removesuffix("[]")


# The shard layout, in file order: features(), the field tuples below and the writer's nested
# columns all derive from this table, so they cannot disagree.
COLUMNS = (
    Column("id", "string", Need.ALWAYS),
    Column("question", "string", Need.ALWAYS),
    Column("gold", "string", Need.ALWAYS),
    Column("student_messages", "messages", Need.ALWAYS),
    Column("teacher_messages", "messages", Need.ALWAYS),
    Column("response_text", "string", Need.PROVENANCE),
    Column("response_ids", "int32[]", Need.ALWAYS),
    # [R][k]: the teacher's raw (temperature-1) top-k at each response position
    Column("teacher_topk_ids", "int32[][]", Need.STORED),
    Column("teacher_topk_logprobs", "float32[][]", Need.STORED),
    # [R][len(manifest.target.temperatures)]: logsumexp(raw log-probs / T) over the vocabulary
    Column("teacher_log_norm", "float32[][]", Need.TARGET),
    # [R][tail_samples]: ids sampled from the teacher's tail, and their raw log-probs
    Column("teacher_tail_ids", "int32[][]", Need.TARGET),
    Column("teacher_tail_logprobs", "float32[][]", Need.TARGET),
    Column("rollouts", "rollouts", Need.PROVENANCE),
    Column("correct_index", "int32", Need.PROVENANCE),
    Column("wrong_index", "int32", Need.PROVENANCE),
    Column("wrong_answer", "string", Need.PROVENANCE),
    Column("wrong_count", "int32", Need.PROVENANCE),
)

REQUIRED_FIELDS = tuple(c.name for c in COLUMNS if c.need in (Need.ALWAYS, Need.STORED))
# What the online teacher (`ssb_teacher: online`) reads: no stored log-probs. A set curated for it
# alone (manifest stored_topk = 0) keeps the log-prob columns with an empty list per row.
ONLINE_FIELDS = tuple(c.name for c in COLUMNS if c.need == Need.ALWAYS)
# The fields of the faithful target (absent in schema-1 sets; training then warns).
TARGET_FIELDS = tuple(c.name for c in COLUMNS if c.need == Need.TARGET)
# The [R][width] numeric columns: the teacher target, one row per answer token.
NESTED_COLUMNS = tuple(c for c in COLUMNS if c.nested)
NESTED_FIELDS = tuple(c.name for c in NESTED_COLUMNS)


class RecordError(ValueError):
    """A curated row or manifest that breaks the contract; the message names the row/file/key."""


class TargetError(ValueError):
    """A set that cannot give the target the training asks for; the message says how to fix it."""


def features():
    """The `datasets.Features` of a curated shard, from COLUMNS (import kept local: `datasets` is heavy)."""
    from datasets import Features, List, Value

    message = {"role": Value("string"), "content": Value("string")}
    rollout = {
        "text": Value("string"),
        "answer": Value("string"),  # extracted final answer ("" when none)
        "correct": Value("bool"),
        "finish_reason": Value("string"),
    }

    def feature(c: Column) -> Any:
        if c.type == "messages":
            return List(message)
        if c.type == "rollouts":
            return List(rollout)
        if c.nested:
            return List(List(Value(c.dtype)))
        if c.type.endswith("[]"):
            return List(Value(c.dtype))
        return Value(c.type)

    return Features({c.name: feature(c) for c in COLUMNS})


def kept_record(
    *,
    id: str,
    question: str,
    gold: str,
    student_messages: list[dict[str, str]],
    teacher_messages: list[dict[str, str]],
    response_text: str,
    response_ids: list[int],
    rollouts: list[dict[str, Any]],
    choice: Any,
) -> dict[str, Any]:
    """A kept problem's row before its target columns: the one place curation's row is spelled out.
    `choice` carries the chosen rollouts (`correct_index`, `wrong_index`, `wrong_answer`, `wrong_count`)."""
    return {
        "id": id,
        "question": question,
        "gold": gold,
        "student_messages": student_messages,
        "teacher_messages": teacher_messages,
        "response_text": response_text,
        "response_ids": response_ids,
        "rollouts": rollouts,
        "correct_index": choice.correct_index,
        "wrong_index": choice.wrong_index,
        "wrong_answer": choice.wrong_answer,
        "wrong_count": choice.wrong_count,
    }


def validate_record(row: dict[str, Any], where: str = "row", *, targets: bool = True) -> None:
    """Raise RecordError naming `where` (e.g. 'data/shard-00003.parquet row 17') if the row is malformed.

    targets=False: the stored teacher targets are not read (online teacher), so not checked."""
    needed = REQUIRED_FIELDS if targets else ONLINE_FIELDS
    missing = [k for k in needed if k not in row]
    if missing:
        raise RecordError(f"{where}: missing field(s) {missing}")
    r = len(row["response_ids"])
    if r == 0:
        raise RecordError(f"{where} (id={row['id']!r}): empty response_ids")
    if not row["student_messages"]:
        raise RecordError(f"{where} (id={row['id']!r}): empty student_messages")
    if not targets:
        if not row["teacher_messages"]:
            raise RecordError(
                f"{where} (id={row['id']!r}): empty teacher_messages (the online teacher's prompt)"
            )
        return
    ids, lps = row["teacher_topk_ids"], row["teacher_topk_logprobs"]
    if len(ids) == 0:
        raise RecordError(
            f"{where} (id={row['id']!r}): no stored teacher log-probs (a set curated without them, for "
            f"`ssb_teacher: online`); train it with `ssb_teacher: online`, or re-curate with log-probs"
        )
    if len(ids) != r or len(lps) != r:
        raise RecordError(
            f"{where} (id={row['id']!r}): teacher_topk_ids/logprobs have {len(ids)}/{len(lps)} rows, "
            f"response_ids has {r}: one top-k row per response token is required"
        )
    k = len(ids[0])
    for j, (i_row, l_row) in enumerate(zip(ids, lps, strict=True)):
        if len(i_row) != k or len(l_row) != k:
            raise RecordError(
                f"{where} (id={row['id']!r}): top-k row {j} has width {len(i_row)}/{len(l_row)}, expected {k}"
            )
    for key in TARGET_FIELDS:
        if key in row and row[key] is not None and len(row[key]) != r:
            raise RecordError(
                f"{where} (id={row['id']!r}): {key} has {len(row[key])} rows, response_ids has {r}"
            )


# ----------------------------------------------------------------------------------------------
# Tokenizer fingerprint: training refuses a tokenizer/template that differs from curation's.


def chat_template_of(tokenizer) -> str:
    tpl = getattr(tokenizer, "chat_template", None)
    if isinstance(tpl, dict):  # several named templates
        tpl = json.dumps(tpl, sort_keys=True)
    if not tpl:
        raise RecordError(f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template")
    return tpl


def sorted_vocab(tokenizer) -> list[tuple[str, int]]:
    """(token, id) pairs of the full vocabulary (added tokens included), by id."""
    return sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])


def vocab_sha256(pairs: list[tuple[str, int]]) -> str:
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest()


def tokenizer_fingerprint(tokenizer) -> dict[str, str]:
    """sha256 of the chat template and of the full vocabulary (token -> id, added tokens included)."""
    return {
        "chat_template_sha256": hashlib.sha256(chat_template_of(tokenizer).encode()).hexdigest(),
        "vocab_sha256": vocab_sha256(sorted_vocab(tokenizer)),
    }


def check_tokenizer(tokenizer, manifest: Manifest) -> None:
    """Refuse (RecordError) a tokenizer that would re-interpret the stored response ids."""
    got = tokenizer_fingerprint(tokenizer)
    for key in ("chat_template_sha256", "vocab_sha256"):
        want = manifest.tokenizer.get(key)
        if want != got[key]:
            what = "chat template" if key.startswith("chat") else "vocabulary"
            raise RecordError(
                f"the training tokenizer's {what} differs from the curated set's ({key}: manifest "
                f"{str(want)[:12]}…, tokenizer {got[key][:12]}…). The set was curated with "
                f"{manifest.model!r}; train with the same tokenizer and chat template (e.g. "
                f"`chat_template: tokenizer_default`), or re-curate with the training model."
            )


def chat_prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a chat rendered with the tokenizer's own template, generation prompt appended.

    Rendering to text and tokenising without extra special tokens is what vLLM and HF chat
    generation do; both curation and training use this one function so their prompts agree.
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def response_input(tokenizer, messages: list[dict[str, str]], response_ids) -> tuple[list[int], int]:
    """(input ids, prompt length P) that score `response_ids` after the chat `messages`: the prompt
    ids followed by response_ids, appended as ids. Either role's view (student or teacher messages)."""
    prompt = chat_prompt_ids(tokenizer, messages)
    return prompt + list(response_ids), len(prompt)


def student_input(tokenizer, row: dict[str, Any]) -> tuple[list[int], int]:
    """(student input ids, prompt length P): what training feeds the student for a curated row."""
    return response_input(tokenizer, row["student_messages"], row["response_ids"])


# ----------------------------------------------------------------------------------------------
# Manifest


@dataclass(frozen=True)
class StoredTarget:
    """The manifest's `target` entry: how the stored target columns were made and how to read them.

    Curation writes it (ssb_plugin.curate.targets.TargetSpec.manifest), training reads it
    (ssb_plugin.train.targets.TargetInfo is this type). A field at its default is absent from the
    JSON, so a set without a `target` entry (schema 1) is StoredTarget() and reads as renormalised
    top-k.
    """

    kind: TargetKind = TargetKind.RENORMALISED
    temperatures: tuple[float, ...] = ()  # one teacher_log_norm column per T, in this order
    tail_temperature: float | None = None  # T_s: the temperature the tail ids were drawn at
    stored_topk: int | None = None
    tail_samples: int | None = None
    stored: bool | None = None  # False: a set for the online teacher only (--no-stored-target)
    tail_sampling: str | None = None  # how the tail ids were drawn, for people
    logprobs: str | None = None  # where the log-probs come from, for people

    def to_dict(self) -> dict[str, Any]:
        """The JSON entry: the fields set away from their defaults."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = value
        if "kind" in out:
            out["kind"] = str(self.kind)
        if "temperatures" in out:
            out["temperatures"] = [float(t) for t in self.temperatures]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = MANIFEST_FILE) -> StoredTarget:
        """The entry as written; RecordError naming `where` and the key for one that cannot be read."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise RecordError(f"{where}: target has unknown key(s) {unknown}")
        kinds = [k.value for k in TargetKind]
        if data.get("kind", TargetKind.RENORMALISED) not in kinds:
            raise RecordError(f"{where}: target.kind {data['kind']!r} is not one of {kinds}")
        values = {**data, "kind": TargetKind(data.get("kind", TargetKind.RENORMALISED))}
        values["temperatures"] = tuple(float(t) for t in data.get("temperatures", ()))
        if values["kind"] == TargetKind.TOPK_TAIL and not values["temperatures"]:
            raise RecordError(f"{where}: target.temperatures is empty; a topk+tail set carries at least one")
        return cls(**values)

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> StoredTarget:
        """What training reads: a "topk+tail" target as stored (kind, temperatures, T_s); any other
        kind reads as the renormalised top-k (StoredTarget())."""
        target = manifest.target
        if target.kind != TargetKind.TOPK_TAIL:
            return cls()
        tail = target.tail_temperature if target.tail_temperature is not None else max(target.temperatures)
        return cls(TargetKind.TOPK_TAIL, target.temperatures, float(tail))

    @property
    def sampling_temperature(self) -> float:
        """T_s of a "topk+tail" target (from_manifest always sets it)."""
        if self.tail_temperature is None:
            raise TargetError(f"a {self.kind} target has no tail_temperature")
        return self.tail_temperature

    def index(self, temperature: float, source: str = "the set") -> int:
        """Column of `temperature` in teacher_log_norm; TargetError (how to re-curate) if not carried."""
        for i, t in enumerate(self.temperatures):
            if abs(t - float(temperature)) <= 1e-6:
                return i
        listed = [f"{t:g}" for t in self.temperatures]
        raise TargetError(
            f"{source} carries the teacher's log-normaliser for T in [{', '.join(listed)}], not for "
            f"ssb_temperature={temperature:g}: train at one of those, or re-curate with "
            f"`ssb-curate ... --target-temperatures {','.join([*listed, f'{temperature:g}'])}` (the exact target at T "
            f"needs logsumexp(teacher logits / T), which only curation sees)"
        )


@dataclass
class Manifest:
    model: str
    revision: str | None = None
    tokenizer: dict[str, str] = field(default_factory=dict)  # tokenizer_fingerprint(...)
    prompts: dict[str, str] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)  # {"rollout": {...}, "teacher": {...}}
    seed: int = 0
    # teacher log-probs stored per answer token (`k` in schema 1); 0: none, a set for `ssb_teacher: online`
    # only. Curation always records it; None (not recorded) only in a manifest built by hand.
    stored_topk: int | None = None
    target: StoredTarget = field(default_factory=StoredTarget)
    counts: dict[str, int] = field(default_factory=dict)  # OUTCOMES -> count
    timings: dict[str, float] = field(default_factory=dict)
    backend: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.target, dict):  # a manifest built from JSON-shaped values
            self.target = StoredTarget.from_dict(self.target)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "target": self.target.to_dict()}, indent=2, sort_keys=True)

    def save(self, directory: str | os.PathLike) -> Path:
        """Atomically write manifest.json into `directory`."""
        from ssb_plugin.atomic import atomic_write_text

        path = Path(directory) / MANIFEST_FILE
        atomic_write_text(path, self.to_json())
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = MANIFEST_FILE) -> Manifest:
        known = {f for f in cls.__dataclass_fields__}
        if "k" in data and "stored_topk" not in data:  # schema 1 names it `k`
            data = {**data, "stored_topk": data["k"]}
        if "model" not in data:
            raise RecordError(f"{where}: missing key 'model'")
        if data.get("schema_version", SCHEMA_VERSION) > SCHEMA_VERSION:
            raise RecordError(
                f"{where}: schema_version {data['schema_version']} is newer than this ssb-plugin "
                f"understands ({SCHEMA_VERSION}); upgrade ssb-plugin"
            )
        values = {k: v for k, v in data.items() if k in known}
        values["target"] = StoredTarget.from_dict(data.get("target") or {}, where)
        return cls(**values)

    @classmethod
    def load(cls, path: str | os.PathLike, revision: str | None = None) -> Manifest:
        """Read the manifest of a curated set: a local directory or a hub dataset id."""
        local = Path(path)
        if local.is_dir():
            file = local / MANIFEST_FILE
            if not file.exists():
                raise RecordError(f"{local}: no {MANIFEST_FILE}; is this a directory written by ssb-curate?")
        elif local.is_file():
            file = local
        else:  # a hub dataset repo: the manifest travels with the shards (--push-to-hub)
            from huggingface_hub import hf_hub_download

            file = Path(hf_hub_download(str(path), MANIFEST_FILE, repo_type="dataset", revision=revision))
        try:
            data = json.loads(Path(file).read_text())
        except json.JSONDecodeError as e:
            raise RecordError(f"{file}: not valid JSON ({e})") from e
        return cls.from_dict(data, where=str(file))
