"""Build `report.md` (+ a training-curve PNG) from one pipeline run's artefacts.

Reads: the curated set's manifest (counts, timings), the training output dir's
`ssb_log_history.jsonl` (written by the plugin's LogHistoryCallback), lm-eval `--output_path`
dirs (one per evaluated model) and an optional stage-timings JSON written by the pipeline script.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ssb_plugin.atomic import atomic_write_text
from ssb_plugin.record import OUTCOMES, Manifest
from ssb_plugin.train.training_log import read_log_history

SECTIONS = ("## Accuracy", "## Curation", "## Training", "## Timings")


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
            v = res.get("results", {}).get(task, {}).get(key)
            n = res.get("n-samples", {}).get(task, {}).get("effective")
            row.append("—" if v is None else f"{100 * v:.1f}%" + (f" (n={n})" if n else ""))
        rows.append(row)
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _count_rows(counts: dict[str, int]) -> list[list]:
    """Outcomes in pipeline order (kept first), any others after, then the total."""
    names = [k for k in OUTCOMES if k in counts] + sorted(
        k for k in counts if k not in OUTCOMES and k != "total"
    )
    return [[k, counts[k]] for k in names] + [["total", sum(counts[k] for k in names)]]


def plot_training(history: list[dict], png: Path) -> list[str]:
    """One panel per logged training series (loss, ssb_kd, ssb_ce, grad_norm, learning_rate)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [h for h in history if "loss" in h or any(k.startswith("ssb_") for k in h)]
    keys = [
        k for k in ("loss", "ssb_kd", "ssb_ce", "grad_norm", "learning_rate") if any(k in h for h in train)
    ]
    evals = [h for h in history if "eval_loss" in h]
    if evals:
        keys.append("eval_loss")
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(4 * max(len(keys), 1), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=False):
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


def build_report(
    out: Path,
    curated: Path | None,
    train_dir: Path | None,
    evals: dict[str, Path],
    timings: Path | None = None,
    title: str = "SSB pipeline report",
) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}", ""]

    parts += [SECTIONS[0], ""]
    results = {name: latest_lm_eval_results(path) for name, path in evals.items()}
    if results:
        header, rows = accuracy_rows(results)
        parts += [
            markdown_table(header, rows),
            "",
            "`exact_match` is the project grader's equivalence check; `paper_match` the published "
            "protocol's strict string match (literal `\\boxed{gold}` on MATH-500, gold substring on AIME).",
            "",
        ]
    else:
        parts += ["(no evaluation results)", ""]

    parts += [SECTIONS[1], ""]
    if curated is not None:
        m = Manifest.load(curated)
        parts += [
            f"Model `{m.model}`, backend `{m.backend}`, k = {m.k}, seed {m.seed}.",
            "",
            markdown_table(["outcome", "problems"], _count_rows(m.counts)),
            "",
        ]
        if m.timings:
            parts += [
                markdown_table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in m.timings.items()]),
                "",
            ]

    parts += [SECTIONS[2], ""]
    history = read_log_history(train_dir) if train_dir is not None else []
    if history:
        png = out.with_name("training_curves.png")
        keys = plot_training(history, png)
        train = [h for h in history if "loss" in h]
        first, last = train[0] if train else {}, train[-1] if train else {}
        parts += [
            f"![training curves]({png.name})",
            "",
            f"{len(train)} logged steps; loss {first.get('loss', float('nan')):.4f} → "
            f"{last.get('loss', float('nan')):.4f}. Series: {', '.join(keys)}.",
            "",
        ]
    else:
        parts += ["(no training log found)", ""]

    parts += [SECTIONS[3], ""]
    if timings is not None and Path(timings).exists():
        t = json.loads(Path(timings).read_text())
        parts += [markdown_table(["stage", "seconds"], [[k, f"{v:.0f}"] for k, v in t.items()]), ""]
    else:
        parts += ["(not recorded)", ""]

    atomic_write_text(out, "\n".join(parts))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m ssb_plugin.demo.report", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="report.md to write (PNG goes beside it)")
    ap.add_argument("--curated", type=Path, help="ssb-curate output dir")
    ap.add_argument("--train", type=Path, help="axolotl output_dir")
    ap.add_argument("--eval", action="append", default=[], metavar="NAME=DIR", help="lm-eval --output_path")
    ap.add_argument("--timings", type=Path, help="stage timings JSON")
    args = ap.parse_args(argv)
    evals = {}
    for spec in args.eval:
        name, sep, path = spec.partition("=")
        if not sep:
            ap.error(f"--eval expects NAME=DIR, got {spec!r}")
        evals[name] = Path(path)
    print(build_report(args.out, args.curated, args.train, evals, args.timings))


if __name__ == "__main__":
    main()
