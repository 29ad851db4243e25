"""The tutorial's figures: training and validation accuracy per epoch."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # Training runs headless; never ask for a display.
import matplotlib.pyplot as plt  # noqa: E402

Histories = dict[str, list[dict[str, float]]]


def plot_accuracy(
    histories: Histories,
    path: Path,
    title: str | None = None,
    restored: dict[str, int] | None = None,
) -> None:
    """Training and validation accuracy per epoch for one or more models, in one figure.

    ``restored`` maps a model to the epoch whose weights were kept (early stopping restores the
    lowest validation loss): it is marked, since that epoch, not the last, is what ships.
    """
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    colours = {"regular": "tab:blue", "separable": "tab:orange"}
    for name, epochs in histories.items():
        numbers = [e["epoch"] for e in epochs]
        colour = colours.get(name)
        axes.plot(
            numbers, [e["accuracy"] for e in epochs], "--", color=colour, label=f"{name} training"
        )
        axes.plot(
            numbers,
            [e["val_accuracy"] for e in epochs],
            "-o",
            color=colour,
            label=f"{name} validation",
            markersize=3,
        )
        epoch = (restored or {}).get(name)
        chosen = [e for e in epochs if e["epoch"] == epoch]
        if chosen and epoch is not None:
            axes.axvline(epoch, color=colour, linestyle=":", alpha=0.6)
            axes.plot(
                [epoch],
                [chosen[0]["val_accuracy"]],
                "*",
                color=colour,
                markersize=13,
                markeredgecolor="black",
                label=f"{name} restored (epoch {epoch})",
            )
    axes.set_xlabel("epoch")
    axes.set_ylabel("accuracy")
    axes.set_title(title or "CIFAR-10 accuracy per epoch")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
