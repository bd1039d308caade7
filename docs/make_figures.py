"""Draws the figures of the docs from the library itself: `python docs/make_figures.py`.

`images/period_plan.png`: the default `RefinePlan` on a ResNet-50 partition (stem,
conv2_x..conv5_x, head): each block's learning rate over the 160 epochs, with the epochs at
which blocks are rolled back to their pre-trained weights marked. The PNG is committed; run
this again after changing `RefinePlan`'s defaults.
"""

import pathlib

import matplotlib

matplotlib.use("Agg")  # Headless: CI and docs builds have no display.

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np

from keras_rollback.refine_plan import RefinePlan

BLOCKS = ["stem", "conv2_x", "conv3_x", "conv4_x", "conv5_x"]
HEAD = "head"
EPOCHS = 160  # The paper: four periods of 40 epochs.
OUTPUT = pathlib.Path(__file__).resolve().parent / "images" / "period_plan.png"


def plot_period_plan(plan, block_names, head_name, epochs, path):
    periods = plan.resolve(block_names, head_name=head_name, epochs=epochs)
    groups = [*block_names, head_name]
    total = periods[-1].end_epoch
    rates = np.zeros((len(groups), total))
    for period in periods:
        for epoch in range(period.start_epoch, period.end_epoch):
            epoch_rates = period.learning_rates(epoch)
            rates[:, epoch] = [epoch_rates[group] for group in groups]

    figure, axes = plt.subplots(figsize=(10, 3.6), dpi=120)
    image = axes.imshow(
        rates,
        aspect="auto",
        interpolation="nearest",
        cmap="viridis",
        norm=mcolors.LogNorm(vmin=rates[rates > 0].min(), vmax=rates.max()),
        extent=(0, total, len(groups) - 0.5, -0.5),
    )
    for period in periods[1:]:
        axes.axvline(period.start_epoch, color="white", linewidth=1.5)
        for block in period.rolled_back:
            row = groups.index(block)
            axes.plot(period.start_epoch + 0.8, row, marker=">", color="#d62728", markersize=8)
    for period in periods:
        axes.text(
            (period.start_epoch + period.end_epoch) / 2,
            -0.75,
            f"period {period.number}",
            ha="center",
            va="bottom",
            fontsize=9,
        )
    axes.set_yticks(range(len(groups)), groups)
    axes.set_xlabel("epoch")
    axes.set_ylim(len(groups) - 0.5, -1.1)
    colorbar = figure.colorbar(image, ax=axes, pad=0.01)
    colorbar.set_label("learning rate")
    axes.set_title(
        "Rolling-back refine-tuning: learning rate per block; red marks = rolled back to the "
        "pre-trained weights",
        fontsize=9,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)


if __name__ == "__main__":
    plot_period_plan(RefinePlan(), BLOCKS, HEAD, EPOCHS, OUTPUT)
    print(f"wrote {OUTPUT}")
