"""`run_study`: every method of a config over several seeds, with intervals and paired differences."""

import copy
import json
import os

import numpy as np
from scipy import stats

from experiments import converged_period_one
from experiments import pretrain
from experiments import report
from experiments import train
from keras_rollback import compat


def run_study(config, workdir):
    """Runs `train.run_experiment` once per seed of `config.study.seeds`, then summarises.

    The pre-trained backbone is the same for every seed (made once, like an ImageNet
    checkpoint); a seed changes the synthetic dataset, the head's initialisation and the
    order of the batches. Writes into `workdir`: `seed-<s>/` (each seed's full experiment,
    resumable), `study.json` (every evaluated row and the summary) and `study.md`: mean and
    95% t-interval of mAP and rank-1 after each period, paired per-seed differences of the
    final scores (`config.study.differences`; `"<method>@<period>"` names a period's end),
    and the mean drift of each block; `drift.png` (the first seed's diagnostics, one panel
    per method).

    Returns:
        The summary (dict).
    """
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json(indent=2))
    weights = config.model.weights
    if weights == "synthetic_source":
        weights = pretrain.synthetic_source_weights(
            config, os.path.join(workdir, "pretrained-source")
        )
    rows = []
    for seed in config.study.seeds:
        seed_config = copy.deepcopy(config)
        with seed_config.unlocked():
            seed_config.seed = seed
            seed_config.model.weights = weights
            del seed_config["study"]
        compat.print_msg(f"Study: seed {seed} of {list(config.study.seeds)}")
        for row in train.run_experiment(seed_config, os.path.join(workdir, f"seed-{seed}")):
            rows.append({**row, "seed": seed})
    summary = summarise(rows, config)
    summary["drift"] = _drift_summary(workdir, config)
    if config.converged_period_one.enabled:
        summary["period_one"] = _period_one_per_seed(workdir, config)
        if config.model.weights == "synthetic_source":
            summary["source_task"] = pretrain.source_training_record(weights)
    with open(os.path.join(workdir, "study.json"), "w") as f:
        json.dump({"summary": summary, "rows": rows}, f, indent=1)
    text = study_table(summary, config)
    with open(os.path.join(workdir, "study.md"), "w") as f:
        f.write(text + "\n")
    first = os.path.join(workdir, f"seed-{config.study.seeds[0]}")
    report.plot_drift(config, first, path=os.path.join(workdir, "drift.png"))
    compat.print_msg(text)
    return summary


def interval(values):
    """`(mean, half-width of the 95% t-interval, n)` of `values` (half-width NaN for n < 2)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return float(values.mean()) if n else float("nan"), float("nan"), n
    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)
    return float(values.mean()), float(half), n


def summarise(rows, config):
    """Per method and period: mean and interval of each metric; paired final differences;
    (the drift per block is added from the work dir by `run_study`)."""
    metrics = report.HEADLINE[config.task]
    ends = {}  # (method, period) -> {seed: row}
    finals = {}  # method -> {seed: row}
    for row in rows:
        if row[metrics[0]] is None:
            continue
        key = (row["method"], row["period"])
        seeds = ends.setdefault(key, {})
        if row["seed"] not in seeds or row["epoch"] > seeds[row["seed"]]["epoch"]:
            seeds[row["seed"]] = row
        last = finals.setdefault(row["method"], {})
        if row["seed"] not in last or row["epoch"] > last[row["seed"]]["epoch"]:
            last[row["seed"]] = row
    periods = [
        {
            "method": method,
            "period": period,
            "epoch": sorted({r["epoch"] for r in by_seed.values()}),
            **{m: interval([100 * r[m] for r in by_seed.values()]) for m in metrics},
        }
        for (method, period), by_seed in ends.items()
    ]
    differences = []
    for better, baseline in config.study.differences:
        scores = [_scores(name, finals, ends) for name in (better, baseline)]
        if None in scores:
            continue
        seeds = sorted(set(scores[0]) & set(scores[1]))
        per_seed = {m: [100 * (scores[0][s][m] - scores[1][s][m]) for s in seeds] for m in metrics}
        differences.append(
            {
                "difference": f"{better} - {baseline}",
                "seeds": seeds,
                **{m: interval(per_seed[m]) for m in metrics},
                **{f"{m}_per_seed": [round(v, 2) for v in per_seed[m]] for m in metrics},
            }
        )
    return {"periods": periods, "differences": differences, "drift": {}}


def _scores(name, finals, ends):
    """Rows by seed of `"<method>"` (its last evaluation) or `"<method>@<period>"`."""
    if "@" in name:
        method, period = name.split("@")
        return ends.get((method, int(period)))
    return finals.get(name)


def _period_one_per_seed(workdir, config):
    """Per seed: where the shared period 1 stopped (`experiments/converged_period_one.py`),
    whether it converged there or hit its cap, and its training loss and accuracy then."""
    rule = converged_period_one.ConvergenceRule.from_config(config.converged_period_one)
    seeds = []
    for seed in config.study.seeds:
        logs = report.epoch_logs(os.path.join(workdir, f"seed-{seed}", "fine_tune", "epochs.jsonl"))
        epochs = rule.period_one_epochs(logs)
        last = logs[epochs - 1]
        seeds.append(
            {
                "seed": seed,
                "epochs": epochs,
                "converged": rule.converged(logs[:epochs]),
                "loss": last["loss"],
                "accuracy": last["accuracy"],
                "mAP": last.get("mAP"),
            }
        )
    return seeds


def _drift_summary(workdir, config):
    """Mean drift of each block at the end of period 1 and of training, per method, read
    from every seed's `epochs.jsonl` (logged by `BlockDiagnostics`)."""
    drift: dict = {}
    for method in config.methods:
        for seed in config.study.seeds:
            path = os.path.join(workdir, f"seed-{seed}", method.replace(":", "_"), "epochs.jsonl")
            run = report.epoch_logs(path)
            period_one = [r for r in run if r.get("period") == 1][-1]
            for moment, record in (("end of period 1", period_one), ("end", run[-1])):
                for key, value in record.items():
                    if key.startswith("drift_"):
                        drift.setdefault(method, {}).setdefault(moment, {}).setdefault(
                            key[len("drift_") :], []
                        ).append(value)
    return {
        method: {
            moment: {block: interval(values)[:2] for block, values in blocks.items()}
            for moment, blocks in moments.items()
        }
        for method, moments in drift.items()
    }


def study_table(summary, config):
    """Markdown tables of a study's summary."""
    metrics = report.HEADLINE[config.task]
    seeds = list(config.study.seeds)
    lines = [
        f"{config.model.backbone} on {config.dataset.name}, seeds {seeds}: mean ± half-width "
        "of the 95% t-interval over seeds (n = seeds that reached the period)",
        "",
        "| method | period | epoch | " + " | ".join(metrics) + " | n |",
        "|---|---|---|" + "---|" * len(metrics) + "---|",
    ]
    for cell in summary["periods"]:
        epochs = cell["epoch"]
        epoch_text = str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]}"
        values = " | ".join(_mean_interval(cell[m]) for m in metrics)
        lines.append(
            f"| {cell['method']} | {cell['period']} | {epoch_text} | {values} | "
            f"{cell[metrics[0]][2]} |"
        )
    lines += [
        "",
        "Paired per-seed differences of the final scores (points; each method's last "
        "evaluated epoch):",
        "",
        "| difference | " + " | ".join(metrics) + " | per seed (" + metrics[0] + ") |",
        "|---|" + "---|" * len(metrics) + "---|",
    ]
    for row in summary["differences"]:
        values = " | ".join(_mean_interval(row[m], sign=True) for m in metrics)
        per_seed = ", ".join(f"{v:+.2f}" for v in row[f"{metrics[0]}_per_seed"])
        lines.append(f"| {row['difference']} | {values} | {per_seed} |")
    if summary.get("period_one"):
        lines += _period_one_lines(summary, config)
    if summary["drift"]:
        blocks = list(next(iter(next(iter(summary["drift"].values())).values())))
        lines += [
            "",
            "Mean drift ||w - w0|| / ||w0|| of each block over seeds:",
            "",
            "| method | when | " + " | ".join(blocks) + " |",
            "|---|---|" + "---|" * len(blocks) + "",
        ]
        for method, moments in summary["drift"].items():
            for moment, values in moments.items():
                cells = " | ".join(f"{values[b][0]:.4f}" for b in blocks)
                lines.append(f"| {method} | {moment} | {cells} |")
    return "\n".join(lines)


def _period_one_lines(summary, config):
    rule = config.converged_period_one
    source = summary.get("source_task")
    lines = ["", "Period 1, shared by every method, trained until it converged:", ""]
    if source:
        final = source["final_epoch"]
        lines += [
            f"Pre-training (source task: {source['identities']} identities, "
            f"{source['images']} images): last epoch's training loss {final['loss']:.4f}, "
            f"accuracy {100 * final['accuracy']:.2f}%.",
            "",
        ]
    lines += [
        f"Rule: training accuracy >= {100 * rule.min_accuracy:g}% and the best loss of the "
        f"last {rule.window} epochs less than {100 * rule.min_relative_improvement:g}% below "
        f"the best before them, from epoch {rule.min_epochs}, at most {rule.max_epochs} "
        "epochs.",
        "",
        "| seed | period 1 epochs | converged | training loss | training accuracy | mAP |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary["period_one"]:
        score = "" if row["mAP"] is None else f"{100 * row['mAP']:.2f}"
        lines.append(
            f"| {row['seed']} | {row['epochs']} | {'yes' if row['converged'] else 'no (cap)'} "
            f"| {row['loss']:.4f} | {100 * row['accuracy']:.2f}% | {score} |"
        )
    return lines


def _mean_interval(value, sign=False):
    mean, half, _ = value
    number = f"{mean:+.2f}" if sign else f"{mean:.2f}"
    return number if np.isnan(half) else f"{number} ± {half:.2f}"
