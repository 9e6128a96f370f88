"""lm-eval glue for the SSB tasks: load the data, normalise fields, score with the project grader.

lm-eval imports this file by path (the `!function utils.x` tags in the YAMLs next to it), not as
`ssb_plugin.tasks.utils`, so every import here is absolute.
"""

from __future__ import annotations

from lm_eval.api.task import ConfigurableTask
from lm_eval.api.utils import maybe_delimit

from ssb_plugin.data import DATA_DIR_ENV, HUB, hub_set, local_path
from ssb_plugin.grading import grade, paper_match, warmup
from ssb_plugin.grading.gold import gsm8k_gold
from ssb_plugin.prompts import SYSTEM_PROMPT
from ssb_plugin.tasks.doc_fields import question_answer

# Start the grader's worker now, while lm-eval loads the model: each grade() call has a hard 2 s
# bound, and a worker cold-started inside that bound on a busy machine could time out a real match.
warmup()

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


def load_docs(*, local_file: str, **_metadata) -> dict:
    """`custom_dataset` loader: the packaged copy by default, the hub or a directory when
    `SSB_DATA_DIR` says so (`ssb_plugin.data`). The hub id of `local_file` is its entry in
    `ssb_plugin.data.SETS`, so a task YAML names only the file.

    lm-eval calls it with the task's metadata and `dataset_kwargs` as keyword arguments (plus, on
    some versions, the model arguments), hence `**_metadata`.
    """
    import datasets

    path = local_path(local_file)
    if path is not None:
        return {"test": datasets.load_dataset("json", data_files=str(path), split="train")}
    hub = hub_set(local_file)
    try:
        return {"test": datasets.load_dataset(hub.hub_path, hub.hub_name, split=hub.hub_split)}
    except Exception as e:  # offline / no hub: say how to run on the packaged files
        raise RuntimeError(
            f"could not load {hub.hub_path} ({hub.hub_split}) from the hub ({DATA_DIR_ENV}={HUB}): {e}. "
            f"Unset {DATA_DIR_ENV} to run on the packaged copy of {local_file}."
        ) from e


def _normalise(doc: dict, idx: int) -> dict:
    question, answer = question_answer(doc, f"doc {idx}")  # an unusable doc is refused (ssb_plugin.fields)
    return {
        "id": str(next((doc[k] for k in ("id", "ID", "unique_id") if doc.get(k) not in (None, "")), idx)),
        "problem": question,
        "answer": answer,
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

    rows = []
    for i, doc in enumerate(dataset):
        question, answer = question_answer(doc, f"doc {i}")
        rows.append({"id": str(i), "problem": question, "answer": gsm8k_gold(answer) or answer})
    return _rebuild(rows)


def _text(output) -> str:
    # lm-eval's own result, not user data: a generation that did not happen is a wrong answer
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


def process_results_easy(doc: dict, results: list) -> dict[str, float]:
    """The demo's held-out arithmetic: the grader with the last-number fallback, as its curation
    (`--answer-fallback`): a 135M model rarely writes `\\boxed{}`, and the demo measures arithmetic."""
    return {"exact_match": float(grade(_text(results[0]), doc["answer"], fallback=True).correct)}


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
