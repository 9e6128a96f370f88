"""Build `report.md` (+ a training-curve PNG) from one pipeline run's artefacts.

Reads: the curated sets' manifests (counts, timings), the training output dir's
`ssb_log_history.jsonl` (written by the plugin's LogHistoryCallback), lm-eval `--output_path`
dirs (one per evaluated model, with `--log_samples` for the paired changes), the held-out KL
JSON (`ssb_plugin.demo.heldout_kl`) and the stage timings JSON (`ssb_plugin.demo.pipeline`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ssb_plugin.atomic import atomic_write_text
from ssb_plugin.demo import compare
from ssb_plugin.demo.lanes import LANES_KEY
from ssb_plugin.record import OUTCOMES, Manifest
from ssb_plugin.train.training_log import read_log_history

SECTIONS = ("## Accuracy", "## Did training move the numbers?", "## Curation", "## Training", "## Timings")


def latest_lm_eval_results(output_path: str | Path) -> dict:
    """The newest `results_*.json` lm-eval wrote under `output_path` (it nests by model name)."""
    files = sorted(Path(output_path).rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"no lm-eval results_*.json under {output_path}")
    return json.loads(files[-1].read_text())


def accuracy_rows(evals: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """Table of model x (task, metric) from lm-eval results; stderr and alias keys left out."""
    columns: list[tuple[str, str]] = []
    for res in evals.values():
        for task, metrics in sorted(res.get("results", {}).items()):
            # lm-eval lists a task's metrics in `higher_is_better`; other numbers (sample_len) are not scores
            declared = res.get("higher_is_better", {}).get(task)
            for key, value in metrics.items():
                metric = key.split(",")[0]
                if key == "alias" or metric.endswith("_stderr") or not isinstance(value, int | float):
                    continue
                if declared is not None and metric not in declared:
                    continue
                if (task, key) not in columns:
                    columns.append((task, key))
    header = ["model"] + [f"{t} {k.replace(',none', '')}" for t, k in columns]
    rows = []
    for name, res in evals.items():
        row = [name]
        for task, key in columns:
            got = res.get("results", {}).get(task, {})
            v, se = got.get(key), got.get(key.replace(",", "_stderr,", 1))
            n = res.get("n-samples", {}).get(task, {}).get("effective")
            cell = "—" if v is None else f"{100 * v:.1f}%"
            if v is not None and isinstance(se, int | float):
                cell += f" ± {100 * se:.1f}"
            row.append(cell + (f" (n={n})" if v is not None and n else ""))
        rows.append(row)
    return header, rows


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; each cell is formatted with str()."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _count_rows(counts: dict[str, int]) -> list[list]:
    """Outcomes in pipeline order (kept first), any others after, then the total."""
    names = [k for k in OUTCOMES if k in counts] + sorted(
        k for k in counts if k not in OUTCOMES and k != "total"
    )
    return [[k, counts[k]] for k in names] + [["total", sum(counts[k] for k in names)]]


# The plotted training series: the loss terms, the optimiser's, then the distillation diagnostics
# (docs/training.md, "Diagnostics").
SERIES = (
    "loss", "ssb_kd", "ssb_ce", "grad_norm", "learning_rate",
    "ssb_teacher_tail_mass", "ssb_student_topk_mass", "ssb_topk_overlap", "ssb_kl_max",
)  # fmt: skip
PANELS_PER_ROW = 5


def plot_training(history: list[dict], png: Path) -> list[str]:
    """One panel per logged training series (`SERIES`, then eval_loss)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [h for h in history if "loss" in h or any(k.startswith("ssb_") for k in h)]
    keys = [k for k in SERIES if any(k in h for h in train)]
    evals = [h for h in history if "eval_loss" in h]
    if evals:
        keys.append("eval_loss")
    cols = max(min(len(keys), PANELS_PER_ROW), 1)
    rows = max(-(-len(keys) // cols), 1)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(keys) :]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, keys, strict=False):
        src = evals if key == "eval_loss" else train
        pts = [(h["step"], h[key]) for h in src if key in h]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return keys


def _accuracy_section(results: dict[str, dict]) -> list[str]:
    if not results:
        return ["(no evaluation results)", ""]
    header, rows = accuracy_rows(results)
    return [
        markdown_table(header, rows),
        "",
        "Each cell: accuracy ± its standard error (lm-eval's) over n problems. `exact_match` is the "
        "project grader's equivalence check (with the last-number fallback on `ssb_easy_heldout`, as "
        "the demo's curation); `paper_match` the published protocol's strict string match "
        "(literal `\\boxed{gold}` on MATH-500, gold substring on AIME).",
        "",
    ]


def _change_row(evals: dict[str, Path], task: str, metric: str) -> list[str]:
    try:
        before = compare.lm_eval_item_scores(evals["base"], task, metric)
        after = compare.lm_eval_item_scores(evals["ssb"], task, metric)
    except FileNotFoundError:  # an evaluation run without --log_samples: no per-problem scores
        return [f"{task} {metric}", "—", "—", "—", "not measured (no per-problem samples logged)"]
    change, se, n = compare.paired_change(before, after)
    b, a = compare.mean_se(list(before.values()))[0], compare.mean_se(list(after.values()))[0]
    return [
        f"{task} {metric} (n={n})",
        f"{100 * b:.1f}%",
        f"{100 * a:.1f}%",
        compare.fmt_pm(change, se, 100),
        compare.verdict(change, se),
    ]


def _kl_row(kl: dict) -> list[str]:
    before, after = dict(enumerate(kl["kl"]["base"])), dict(enumerate(kl["kl"]["ssb"]))
    change, se, n = compare.paired_change(before, after)
    (b, b_se), (a, a_se) = compare.mean_se(list(before.values())), compare.mean_se(list(after.values()))
    return [
        f"held-out KL(teacher ‖ student) per token, T={kl['temperature']:g} (n={n} records)",
        compare.fmt_pm(b, b_se, digits=4),
        compare.fmt_pm(a, a_se, digits=4),
        compare.fmt_pm(change, se, digits=4),
        compare.verdict(change, se),
    ]


def _changes_section(evals: dict[str, Path], heldout_kl: Path | None) -> list[str]:
    """base -> ssb on the same problems / records, each change with its paired standard error."""
    if not {"base", "ssb"} <= evals.keys():
        return ["(needs a `base` and an `ssb` evaluation)", ""]
    rows = []
    results = latest_lm_eval_results(evals["ssb"])
    for task, metrics in sorted(results.get("results", {}).items()):
        declared = results.get("higher_is_better", {}).get(task) or {}
        for metric in declared:
            if f"{metric},none" not in metrics:
                continue
            rows.append(_change_row(evals, task, metric))
    if heldout_kl is not None and Path(heldout_kl).exists():
        rows.append(_kl_row(json.loads(Path(heldout_kl).read_text())))
    header = ["measure", "base", "ssb", "change ± SE (paired)", "larger than its SE?"]
    return [
        markdown_table(header, rows),
        "",
        "A change is measured on the same problems (or held-out records) before and after training; "
        "its standard error is that of the per-item differences. A change within its standard error cannot "
        "be told from noise; about two standard errors is the usual bar for a real effect, and this is one run "
        "on one seed. Lower KL means "
        "the student's answers moved toward the hinted teacher's on problems it never trained on.",
        "",
    ]


def _training_section(out: Path, history: list[dict]) -> list[str]:
    if not history:
        return ["(no training log found)", ""]
    png = out.with_name("training_curves.png")
    keys = plot_training(history, png)
    epochs = compare.epoch_means(history, "loss")
    lines = [f"![training curves]({png.name})", ""]
    if epochs:
        table = [[e, n, f"{m:.4f}"] for e, n, m in epochs]
        lines += [markdown_table(["epoch", "logged steps", "mean loss"], table), ""]
        same = len({n for _, n, _ in epochs}) == 1
        lines += [
            f"Mean loss per epoch over {'the same' if same else 'unequal numbers of'} logged steps: "
            f"epoch {epochs[0][0]} {epochs[0][2]:.4f} → epoch {epochs[-1][0]} {epochs[-1][2]:.4f} "
            "(single steps swing with the record they see; the per-epoch means compare like with like). "
            f"Series: {', '.join(keys)}.",
            "",
        ]
    return lines


def build_report(
    out: Path,
    curated: Path | None,
    train_dir: Path | None,
    evals: dict[str, Path],
    timings: Path | None = None,
    title: str = "SSB pipeline report",
    heldout_kl: Path | None = None,
    heldout_curated: Path | None = None,
) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}", "", SECTIONS[0], ""]
    parts += _accuracy_section({name: latest_lm_eval_results(path) for name, path in evals.items()})
    parts += [SECTIONS[1], ""] + _changes_section(evals, heldout_kl)
    parts += [SECTIONS[2], ""]
    for label, path in (("Training set", curated), ("Held-out set (for the KL)", heldout_curated)):
        if path is not None:
            parts += _curation_section(label, Manifest.load(path))
    parts += [SECTIONS[3], ""]
    parts += _training_section(out, read_log_history(train_dir) if train_dir is not None else [])
    parts += [SECTIONS[4], ""]
    if timings is not None and Path(timings).exists():
        t = json.loads(Path(timings).read_text())
        lanes = t.pop(LANES_KEY, {})
        rows = [[k, lanes.get(k, ""), f"{v:.0f}"] for k, v in t.items()]
        parts += [markdown_table(["stage", "lane", "seconds"], rows), ""]
        if "wall" in t and len(set(lanes.values())) > 1:
            parts += [
                "`wall` is the pipeline's elapsed time after setup and the model's conversion: its lanes run at "
                "once, so the stages add up to more.",
                "",
            ]
    else:
        parts += ["(not recorded)", ""]
    atomic_write_text(out, "\n".join(parts))
    return out


def _curation_section(label: str, m: Manifest) -> list[str]:
    parts = [
        f"{label}: model `{m.model}`, backend `{m.backend}`, stored top-k = {m.stored_topk}, seed {m.seed}.",
        "",
        markdown_table(["outcome", "problems"], _count_rows(m.counts)),
        "",
    ]
    if m.timings:
        parts += [markdown_table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in m.timings.items()]), ""]
    return parts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m ssb_plugin.demo.report", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="report.md to write (PNG goes beside it)")
    ap.add_argument("--curated", type=Path, help="ssb-curate output dir")
    ap.add_argument("--train", type=Path, help="axolotl output_dir")
    ap.add_argument("--eval", action="append", default=[], metavar="NAME=DIR", help="lm-eval --output_path")
    ap.add_argument("--timings", type=Path, help="stage timings JSON")
    ap.add_argument("--heldout-kl", type=Path, help="JSON of python -m ssb_plugin.demo.heldout_kl")
    ap.add_argument("--heldout-curated", type=Path, help="the held-out set's ssb-curate output dir")
    args = ap.parse_args(argv)
    evals = {}
    for spec in args.eval:
        name, sep, path = spec.partition("=")
        if not sep:
            ap.error(f"--eval expects NAME=DIR, got {spec!r}")
        evals[name] = Path(path)
    print(
        build_report(
            args.out,
            args.curated,
            args.train,
            evals,
            args.timings,
            heldout_kl=args.heldout_kl,
            heldout_curated=args.heldout_curated,
        )
    )


if __name__ == "__main__":
    main()
