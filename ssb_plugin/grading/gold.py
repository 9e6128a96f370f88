"""Gold answers as datasets write them: the one place that knows GSM8K's `#### N` convention.

Curation (`curate/problems.py`), the lm-eval GSM8K task (`tasks/utils.py`), the GRPO data prep
(`train/grpo.py`) and the grader itself (`api.check`) all read golds through here.
"""

from __future__ import annotations

from .boxes import last_boxed
from .extract import extract_answer
from .ladder import is_sentence, named_boxes

GSM8K_MARK = "####"


def gsm8k_gold(text: str) -> str | None:
    """The text after the last `####` of a GSM8K worked answer ("... = 72 clips.\\n#### 72" -> "72");
    None when the text has no `####`."""
    if GSM8K_MARK not in text:
        return None
    return text.rsplit(GSM8K_MARK, 1)[1].strip()


def gold_answer(gold: str) -> str:
    """A gold given as a worked solution: its `#### N`, else its (named) boxes, else the answer of a
    worked solution read leniently, else the text itself."""
    found = gsm8k_gold(gold)
    if found is not None:
        return found
    if "\\boxed" in gold or "\\fbox" in gold:
        return named_boxes(gold) or last_boxed(gold) or gold
    if is_sentence(gold):  # a worked solution without a box: its answer, read leniently
        return extract_answer(gold) or gold
    return gold
