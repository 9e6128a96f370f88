"""lm-eval glue for the SSB tasks: load the data, normalise fields, score with the project grader.

lm-eval imports this file by path (the `!function utils.x` tags in the YAMLs next to it), not as
`ssb_plugin.tasks.utils`, so every import here is absolute.
"""

from __future__ import annotations

import os
from pathlib import Path

from lm_eval.api.task import ConfigurableTask
from lm_eval.api.utils import maybe_delimit

from ssb_plugin.grading import grade, paper_match, warmup
from ssb_plugin.grading.gold import gsm8k_gold
from ssb_plugin.prompts import SYSTEM_PROMPT

# Start the grader's worker now, while lm-eval loads the model: each grade() call has a hard 2 s
# bound, and a worker cold-started inside that bound on a busy machine could time out a real match.
warmup()

# Offline switch: a directory holding the local JSONL copies named in each YAML (`local_file`).
DATA_DIR_ENV = "SSB_DATA_DIR"
# Separator between the system prompt and the problem when no chat template is applied.
PLAIN_SEPARATOR = "\n\n"


class SSBMathTask(ConfigurableTask):
    """A YAML task whose plain-text prompt separates the system prompt from the problem.

    Its `description` is `ssb_plugin.prompts.SYSTEM_PROMPT`. lm-eval renders `description` as a system message. Under `--apply_chat_template` that is exactly
    the student's chat (`ssb_plugin.prompts.student_messages`); without it lm-eval concatenates the
    system text and the problem with nothing in between, so this class inserts `PLAIN_SEPARATOR`.
    """

    def __init__(self, config=None, **kwargs):
        # `class` is the YAML key that selected this class; TaskConfig does not know it.
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        # The system prompt comes from the one place that defines the student's format; the YAMLs
        # carry no copy (a task file may still set its own `description`).
        config.setdefault("description", SYSTEM_PROMPT)
        super().__init__(config=config, **kwargs)

    def fewshot_context(
        self,
        doc,
        num_fewshot,
        system_instruction=None,
        apply_chat_template=False,
        fewshot_as_multiturn=False,
        chat_template=None,
        gen_prefix=None,
    ):
        ctx = super().fewshot_context(
            doc,
            num_fewshot,
            system_instruction=system_instruction,
            apply_chat_template=apply_chat_template,
            fewshot_as_multiturn=fewshot_as_multiturn,
            chat_template=chat_template,
            gen_prefix=gen_prefix,
        )
        if apply_chat_template and chat_template:
            return ctx
        # The system text exactly as lm-eval builds it (same helper, same delimiter).
        description = self.resolve_field(doc, self.config.description) or ""
        head = maybe_delimit(system_instruction, description, self.config.fewshot_delimiter)
        if head and isinstance(ctx, str) and ctx.startswith(head) and not head[-1].isspace():
            rest = ctx[len(head) :]
            if rest and not rest[0].isspace():
                ctx = head + PLAIN_SEPARATOR + rest
        return ctx


def load_docs(
    *, hub_path: str, hub_split: str, local_file: str, hub_name: str | None = None, **_metadata
) -> dict:
    """`custom_dataset` loader: the hub set by default, `$SSB_DATA_DIR/<local_file>` when that is set.

    lm-eval calls it with the task's metadata and `dataset_kwargs` as keyword arguments (plus, on
    some versions, the model arguments), hence `**_metadata`.
    """
    import datasets

    data_dir = os.environ.get(DATA_DIR_ENV)
    if data_dir:
        path = Path(data_dir).expanduser().resolve() / local_file
        if not path.is_file():
            raise FileNotFoundError(f"{DATA_DIR_ENV}={data_dir} is set but {path} does not exist")
        return {"test": datasets.load_dataset("json", data_files=str(path), split="train")}
    try:
        return {"test": datasets.load_dataset(hub_path, hub_name, split=hub_split)}
    except Exception as e:  # offline / no hub: say how to run on local files
        raise RuntimeError(
            f"could not load {hub_path} ({hub_split}) from the hub: {e}. To run offline, set "
            f"{DATA_DIR_ENV} to a directory holding {local_file} (see `ssb-tasks --list`)."
        ) from e


def _field(doc: dict, *names: str):
    for name in names:
        if doc.get(name) is not None:
            return doc[name]
    raise KeyError(f"none of the fields {names} in doc with keys {sorted(doc)}")


def _normalise(doc: dict, idx: int) -> dict:
    # Hub and local copies spell fields differently (Maxwell-Jia/AIME_2024: Problem/Answer/ID).
    return {
        "id": str(next((doc[k] for k in ("id", "ID", "unique_id") if doc.get(k) not in (None, "")), idx)),
        "problem": str(_field(doc, "problem", "Problem", "question")).strip(),
        "answer": str(_field(doc, "answer", "Answer")).strip(),
    }


def _rebuild(rows: list[dict]):
    # A fresh Dataset, not `.map`: map keeps an input column's type, and AIME answers must become strings.
    import datasets

    return datasets.Dataset.from_list(rows)


def process_docs(dataset):
    """MATH-500 / AIME: keep `id`, `problem`, `answer` (a string) whatever the source spelling."""
    return _rebuild([_normalise(doc, i) for i, doc in enumerate(dataset)])


def process_docs_gsm8k(dataset):
    """GSM8K: the gold is the text after `####` in the worked answer."""

    return _rebuild(
        [
            {
                "id": str(i),
                "problem": doc["question"].strip(),
                "answer": gsm8k_gold(doc["answer"]) or doc["answer"].strip(),
            }
            for i, doc in enumerate(dataset)
        ]
    )


def _text(output) -> str:
    return output if isinstance(output, str) else ""


def _greedy(doc: dict, results: list, protocol: str | None) -> dict[str, float]:
    output = _text(results[0])
    scores = {"exact_match": float(grade(output, doc["answer"]).correct)}
    if protocol:
        scores["paper_match"] = float(paper_match(output, doc["answer"], protocol))
    return scores


def process_results_math500(doc: dict, results: list) -> dict[str, float]:
    """Project grader + the paper's MATH-500 check (literal `\\boxed{gold}` in the output)."""
    return _greedy(doc, results, "math500")


def process_results_aime(doc: dict, results: list) -> dict[str, float]:
    """Project grader + the paper's AIME check (gold string anywhere in the output)."""
    return _greedy(doc, results, "aime")


def process_results_gsm8k(doc: dict, results: list) -> dict[str, float]:
    """Project grader only: the paper reports no GSM8K protocol (it is the training source)."""
    return _greedy(doc, results, None)


def process_results_aime_avg(doc: dict, results: list) -> dict[str, float]:
    """Sampled variant: `results[0]` holds the k samples (filter `take_first_k`).

    avg_at_k = mean correctness over the k samples (an unbiased pass@1 estimate), pass_at_k = any correct.
    """
    samples = results[0] if isinstance(results[0], list) else list(results)
    if not samples:
        return {"avg_at_k": 0.0, "pass_at_k": 0.0, "paper_avg_at_k": 0.0}
    correct = [grade(_text(s), doc["answer"]).correct for s in samples]
    paper = [paper_match(_text(s), doc["answer"], "aime") for s in samples]
    return {
        "avg_at_k": sum(correct) / len(samples),
        "pass_at_k": float(any(correct)),
        "paper_avg_at_k": sum(paper) / len(samples),
    }
