"""Result files, plots and the paper-style comparison table of an experiment."""

import csv
import io
import os

import keras
import numpy as np

from experiments import paper_results
from keras_rollback import _atomic_files
from keras_rollback import _figures
from keras_rollback.callbacks.block_diagnostics import plot_block_drift

COLUMNS = (
    "method",
    "period",
    "period_start_epoch",
    "epoch",
    "loss",
    "rank1",
    "rank5",
    "rank10",
    "mAP",
    "mINP",
    "top1",
    "wall_time",
    "backend",
    "device",
    "weights",
    "weights_file",
    "weights_sha256",
)
# The headline metrics of each task, as the paper's tables report them.
HEADLINE = {"reid": ("mAP", "rank1"), "classification": ("top1",)}


def epoch_logs(path):
    """Every epoch's record of an `epochs.jsonl`, in epoch order, across resumes (the last
    write of an epoch wins; a cut last line is ignored); `[]` if the file is absent."""
    if not os.path.exists(path):
        return []
    epochs = {record["epoch"]: record for record in _atomic_files.read_json_lines(path)}
    return [epochs[epoch] for epoch in sorted(epochs)]


def read_history(path, method, periods, device):
    """Rows of a method's `epochs.jsonl` (every epoch, across resumes; the last write wins;
    a cut last line is ignored)."""
    rows = []
    for record in epoch_logs(path):
        epoch = record["epoch"]
        row = {
            "method": method,
            # Logged by RollbackRefine (plateau plans decide their periods while training).
            "period": int(record["period"])
            if "period" in record
            else next(p.number for p in periods if p.start_epoch <= epoch < p.end_epoch),
            # 1-based, like `epoch`.
            "period_start_epoch": None
            if "period_start_epoch" not in record
            else int(record["period_start_epoch"]) + 1,
            "epoch": epoch + 1,
            "backend": keras.backend.backend(),
            "device": device,
        }
        for key in COLUMNS[4:-2]:
            row[key] = record.get(key)
        rows.append(row)
    return rows


def write_results(rows, workdir):
    """`results.csv` and `results.json`: one row per method and epoch (written atomically)."""
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    _atomic_files.write_text(os.path.join(workdir, "results.csv"), table.getvalue())
    _atomic_files.write_json(os.path.join(workdir, "results.json"), rows, indent=2)


def plot_curves(rows, workdir):
    """`curves.png`: `curves_figure(rows)`, written atomically."""
    _atomic_files.atomic_write(
        os.path.join(workdir, "curves.png"),
        lambda tmp: _figures.save_png(curves_figure(rows), tmp, dpi=120),
        suffix=".png",
    )


def curves_figure(rows):
    """Training loss (log scale) and mAP (or accuracy) per epoch per method (Figure 4).

    The loss axis (`figure.axes[0]`) has a dashed line per method, the metric axis
    (`figure.axes[1]`) a line with markers per method, in the same colour; dotted vertical
    lines in that colour mark where each method's periods begin. The legend is the figure's
    (`figure.legends[0]`), right of the axes.
    """
    figure = _figures.agg_figure(figsize=(9, 4.5), layout="constrained")
    loss_axis = figure.add_subplot()
    map_axis = loss_axis.twinx()
    for index, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
        colour = f"C{index}"
        mine = [r for r in rows if r["method"] == method]
        loss_axis.plot(
            [r["epoch"] for r in mine],
            [r["loss"] for r in mine],
            color=colour,
            linestyle="--",
            label=f"loss ({method})",
        )
        _figures.mark_period_starts(
            loss_axis,
            [r["epoch"] for r in mine],
            [r["period"] for r in mine],
            color=colour,
            linestyle=":",
        )
        metric = "mAP" if any(r["mAP"] is not None for r in mine) else "top1"
        scored = [r for r in mine if r[metric] is not None]
        map_axis.plot(
            [r["epoch"] for r in scored],
            [100 * r[metric] for r in scored],
            color=colour,
            marker="o",
            label=f"{metric} ({method})",
        )
    loss_axis.set_yscale("log")
    loss_axis.set_xlabel("epoch (dotted: period starts)")
    loss_axis.set_ylabel("train loss")
    map_axis.set_ylabel("mAP or top-1 accuracy (%)")
    handles = loss_axis.get_legend_handles_labels()
    more = map_axis.get_legend_handles_labels()
    # Outside the axes (matplotlib >= 3.7): inside, it hid the last epochs.
    figure.legend(
        handles[0] + more[0], handles[1] + more[1], loc="outside right upper", fontsize="small"
    )
    return figure


def plot_drift(config, workdir, path=None):
    """`drift.png`: each block's drift from the pre-trained weights (and gradient norm) per
    epoch, one panel per method, from the methods' `epochs.jsonl` (not the weight mixes,
    which train nothing and log no drift)."""
    runs = {}
    for method in config.methods:
        records = epoch_logs(os.path.join(workdir, method.replace(":", "_"), "epochs.jsonl"))
        if any(key.startswith("drift_") for record in records for key in record):
            runs[method] = records
    _atomic_files.atomic_write(
        path or os.path.join(workdir, "drift.png"),
        lambda tmp: plot_block_drift(
            runs,
            tmp,
            title=f"{config.model.backbone} on {config.dataset.name}: drift from the "
            "pre-trained weights per block (dashed: period starts)",
        ),
        suffix=".png",
    )


def comparison_table(rows, config):
    """Markdown table of the headline metrics (%) at the end of each period, per method,
    with the paper's published numbers in brackets where it reports that setting."""
    metrics = HEADLINE[config.task]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    ends = {
        (r["method"], r["period"]): r
        for r in rows
        if r[metrics[0]] is not None and _is_period_end(r, rows)
    }
    names = " / ".join(metrics)
    with_paper = set()  # Methods with a published number in some cell: "(paper)" in the header.
    body = []
    for period in sorted({p for _, p in ends}):
        cells = [str(period)]
        for method in methods:
            row = ends.get((method, period))
            if row is None:
                cells.append("—")
                continue
            last = period == max(p for m, p in ends if m == method)
            cell = " / ".join(f"{100 * row[m]:.2f}" for m in metrics)
            paper = paper_results.lookup(
                config.model.backbone, config.dataset.name, method, period, last
            )
            if paper is not None:
                cell += " (" + " / ".join("—" if v is None else f"{v:.2f}" for v in paper) + ")"
                with_paper.add(method)
            cells.append(cell)
        body.append("| " + " | ".join(cells) + " |")
    header = ["period"] + [
        f"{m} {names}" + (" (paper)" if m in with_paper else "") for m in methods
    ]
    title = f"{config.model.backbone} on {config.dataset.name}, {keras.backend.backend()} backend"
    return "\n".join([title, "| " + " | ".join(header) + " |", "|" + "---|" * len(header), *body])


def how_to_read(rows, num_queries):
    """What a one-seed comparison table of a ReID run can resolve, printed beside it."""
    finals = {}
    for row in rows:
        if row["rank1"] is not None:
            finals[row["method"]] = row
    rank1 = float(np.mean([r["rank1"] for r in finals.values()]))
    half = 100 * 1.96 * np.sqrt(rank1 * (1 - rank1) / num_queries)
    return (
        f"How to read this table: it is one seed and {num_queries} queries. Rank-1 moves in "
        f"steps of {100 / num_queries:.1f} points, and the queries alone give it a 95% "
        f"interval of about ±{half:.1f} points (binomial, at rank-1 {100 * rank1:.0f}%); mAP "
        "averages over the same queries, and retraining with another seed moves both further. "
        "Differences between methods smaller than that are not resolved by this run. "
        "docs/study.md measures the seed-to-seed spread and the paired differences over 5 "
        "seeds: python -m experiments.main --config=experiments/configs/study.py "
        "--workdir=<dir>. " + CONVERGED_STUDY_VERDICT
    )


# What the converged-regime study measured (docs/study.md), printed after every ReID table.
CONVERGED_STUDY_VERDICT = (
    "Where the paper's premise holds (period 1 trained to a measured plateau, a larger source "
    "task, a shifted target; experiments/configs/converged_study.py), rolling back ended "
    "8.5 ± 5.0 mAP below base_cy and 5.9 ± 3.7 below fine-tuning over 5 seeds (below both on "
    "every seed; L2-SP 2.0 ± 1.1 above rolling back, base_cy best); caveat: a small synthetic "
    "task with synthetic pre-training, not Market-1501 with ImageNet weights."
)


def weights_columns(provenance):
    """The result columns naming the backbone weights: name, file and SHA-256."""
    return {
        "weights": provenance.get("weights"),
        "weights_file": provenance.get("file_name") or provenance.get("file") or "",
        "weights_sha256": provenance.get("sha256", ""),
    }


def weights_note(provenance):
    """One paragraph for `comparison.md`: which pre-trained weights the numbers come from."""
    lines = [f"Backbone weights: {provenance.get('description')}"]
    details = [
        f"{label} {provenance[key]}"
        for label, key in (
            ("file", "file"),
            ("SHA-256", "sha256"),
            ("ImageNet top-1", "top1"),
            ("preprocessing", "preprocessing"),
        )
        if provenance.get(key) is not None
    ]
    if details:
        lines.append("(" + ", ".join(details) + ").")
    if provenance.get("kind") not in (None, "torchvision"):
        lines.append("These are not the paper's weights (torchvision V1): expect other numbers.")
    return " ".join(lines)


def _is_period_end(row, rows):
    later = [r for r in rows if r["method"] == row["method"] and r["period"] == row["period"]]
    return row["epoch"] == max(r["epoch"] for r in later)
