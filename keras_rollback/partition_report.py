"""Reports of a `BlockPartition`: a table per block, a printed summary, a picture."""

import numpy as np

from keras_rollback import _figures
from keras_rollback.resolution_blocks import format_resolution


def partition_table(partition, plan=None, epochs=None):
    """Per-group statistics: a list of dicts, the blocks in order, then the head.

    Keys: `group`, `resolution` (the distinct spatial sizes of the
    group's layers, largest first; empty for the head or a model without
    a functional graph), `layers` (layers owning weights), `conv_layers`
    (layers with a 4-D kernel), `trainable_params`,
    `non_trainable_params`, and with a `plan`, `rolled_back_in` (the
    numbers of the periods that start by rolling the group back) and
    `learning_rates` (the group's rate at the start of each period, layer-wise
    decay included).

    Args:
        partition: `BlockPartition`.
        plan: Optional `RefinePlan`.
        epochs: Optional integer. Training epochs, for a plan whose
            number of periods follows from them.
    """
    periods = _resolved_periods(partition, plan, epochs)
    rows = []
    for group in partition.group_names:
        paths = partition.paths(group)
        layers = {p.rsplit("/", 1)[0] for p in paths}
        conv_layers = {
            p.rsplit("/", 1)[0]
            for p in paths
            if p.endswith("kernel") and len(partition.shape_of(p)) == 4
        }
        sizes = [(int(np.prod(partition.shape_of(p))), partition.is_trainable(p)) for p in paths]
        trainable = sum(size for size, is_trainable in sizes if is_trainable)
        frozen = sum(size for size, is_trainable in sizes if not is_trainable)
        resolutions = {r for _, g, r in partition.layers if g == group and r is not None}
        row = {
            "group": group,
            "resolution": tuple(sorted(resolutions, key=np.prod, reverse=True))
            if group != partition.head_name
            else (),
            "layers": len(layers),
            "conv_layers": len(conv_layers),
            "trainable_params": trainable,
            "non_trainable_params": frozen,
        }
        if periods is not None:
            row["rolled_back_in"] = tuple(
                p.number for p in periods if group in p.rolled_back and p.start_epoch > 0
            )
            row["learning_rates"] = tuple(p.base_learning_rates[group] for p in periods)
        rows.append(row)
    return rows


def print_partition(partition, plan=None, epochs=None, *, print_fn=None):
    """Prints one line per block and the head: resolution, layers, conv layers, parameters.

    With a `plan`, two more columns list the periods that start by rolling
    the group back ("-": never) and the group's learning rate at the start
    of each period.

    Args:
        partition: `BlockPartition`.
        plan: Optional `RefinePlan`.
        epochs: Optional integer. Training epochs, for a plan whose
            number of periods follows from them.
        print_fn: Callable taking one string. Defaults to `print`.
    """
    print_fn = print_fn or print
    rows = partition_table(partition, plan, epochs)
    width = max(12, *(len(g) + 2 for g in partition.group_names))
    header = (
        f"{'group':<{width}}{'resolution':>16}{'layers':>8}{'conv':>6}"
        f"{'trainable':>14}{'non-trainable':>15}"
    )
    if plan is not None:
        header += f"  {'rolled back in periods':<24}rates at period starts"
    lines = [f'BlockPartition of model "{partition.model_name}"', header, "-" * len(header)]
    for row in rows:
        line = (
            f"{row['group']:<{width}}{format_resolution(row['resolution']):>16}{row['layers']:>8}"
            f"{row['conv_layers']:>6}{row['trainable_params']:>14,}{row['non_trainable_params']:>15,}"
        )
        if plan is not None:
            rolled_back = ", ".join(map(str, row["rolled_back_in"])) or "-"
            line += f"  {rolled_back:<24}{format_rates(row['learning_rates'])}"
        lines.append(line)
    print_fn("\n".join(lines))


def plot_partition(partition, path, plan=None, epochs=None):
    """Writes `partition_figure(partition, plan, epochs)` to a PNG file.

    Args:
        partition: `BlockPartition`.
        path: String or path-like. PNG file to write; parent folders are
            made.
        plan: Optional `RefinePlan`.
        epochs: Optional integer. Training epochs, for a plan whose
            number of periods follows from them.

    Returns:
        `path`, as a string.
    """
    return _figures.save_png(partition_figure(partition, plan, epochs), path)


def partition_figure(partition, plan=None, epochs=None):
    """Draws the blocks along the network.

    Each layer with weights is a bar at its position in the graph, as
    high as its feature-map side (log scale) and coloured by group; each
    block is labelled with its resolution, parameters and, with a `plan`,
    the periods that roll it back.

    Args:
        partition: `BlockPartition`.
        plan: Optional `RefinePlan`.
        epochs: Optional integer. Training epochs, for a plan whose
            number of periods follows from them.

    Returns:
        A `matplotlib.figure.Figure` drawn by an Agg canvas (pyplot does not
        know it), with one axes: its bars are the layers, its texts the
        block labels.
    """
    rows = {row["group"]: row for row in partition_table(partition, plan, epochs)}
    layers = partition.layers
    if not layers:
        raise ValueError(
            f"Model {partition.model_name!r} has no functional graph to plot: "
            "build it as a functional or Sequential model."
        )
    colours = {group: f"C{i % 10}" for i, group in enumerate(partition.group_names)}
    heights = [max(r) if r is not None else 0.5 for _, _, r in layers]  # 0.5: no bar
    figure = _figures.agg_figure(
        figsize=(max(8.0, min(24.0, len(layers) / 12)), 4.5), layout="constrained"
    )
    axes = figure.add_subplot()
    axes.bar(
        range(len(layers)),
        [h - 0.5 for h in heights],
        bottom=0.5,
        width=1.0,
        color=[colours[g] for _, g, _ in layers],
    )
    axes.set_yscale("log", base=2)
    axes.set_xlim(-0.5, len(layers) - 0.5)
    axes.set_xlabel("layers with weights, in graph order")
    axes.set_ylabel("feature-map side (output)")
    figure.suptitle(f'BlockPartition of model "{partition.model_name}"')
    for group in partition.group_names:
        positions = [i for i, (_, g, _) in enumerate(layers) if g == group]
        if not positions:
            continue
        row = rows[group]
        label = [
            group,
            format_resolution(row["resolution"]),
            f"{row['trainable_params'] + row['non_trainable_params']:,} params",
        ]
        if plan is not None:
            periods = ", ".join(map(str, row["rolled_back_in"])) or "-"
            label.append(f"rolled back: {periods}")
            label.append(f"lr: {format_rates(row['learning_rates'])}")
        axes.text(
            (positions[0] + positions[-1]) / 2,
            1.02,
            "\n".join(label),
            ha="center",
            va="bottom",
            fontsize=7,
            transform=axes.get_xaxis_transform(),
        )
    return figure


def format_rates(rates):
    """Learning rates as short text: `(0.01, 0.001)` -> `"0.01, 0.001"`."""
    return ", ".join(f"{rate:.3g}" for rate in rates)


def _resolved_periods(partition, plan, epochs):
    if plan is None:
        return None
    if not hasattr(plan, "resolve"):
        raise ValueError(f"`plan` must be a RefinePlan. Received: plan={plan!r}")
    return plan.resolve(partition.block_names, partition.head_name, epochs=epochs)
