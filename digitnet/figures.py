"""What TensorBoard shows beyond Lightning's scalars: the training curves side by side in its Custom Scalars tab
(`CurvesLayout`); after `test`, in its Images tab, the confusion matrix and most confident mistakes (`TestFigures`)."""

from __future__ import annotations

import math

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from torchmetrics.classification import MulticlassConfusionMatrix
from torchvision.utils import make_grid

from digitnet.errors import DigitnetError


# TensorBoard's Custom Scalars tab: training and validation on the same axes, every run in each chart (its Time
# Series tab sorts them after `epoch` and `hp_metric`); http://localhost:6006/#custom_scalars opens straight on them.
LAYOUT = {"digitnet": {"accuracy (train/acc, val/acc)": ["Multiline", ["train/acc", "val/acc"]],
                       "loss (train/loss, val/loss)": ["Multiline", ["train/loss", "val/loss"]]}}  # fmt: skip
# And for a model with a number net (--model.number_net), its curves.
NUMBER_CHARTS = {"number net: strings read exactly (val/number_acc)": ["Multiline", ["val/number_acc"]],
                 "number net: loss (train/number_loss, val/number_loss)":
                     ["Multiline", ["train/number_loss", "val/number_loss"]]}  # fmt: skip


class CurvesLayout(Callback):
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        charts = {**LAYOUT["digitnet"], **(NUMBER_CHARTS if getattr(pl_module, "number_net", None) else {})}
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger) and trainer.is_global_zero:
                logger.experiment.add_custom_scalars({"digitnet": charts})


class TestFigures(Callback):
    """Logs `test/confusion_matrix` and `test/mistakes` to every TensorBoard logger after each test, `fit`'s included.

    Args:
        mistakes: How many of the most confident mistakes to show; 0 shows none.
        confusion_matrix: Whether to log the confusion matrix.
    """

    def __init__(self, mistakes: int = 32, confusion_matrix: bool = True) -> None:
        if mistakes < 0:
            raise DigitnetError(f"--test_figures.mistakes must be 0 (none) or more, got {mistakes}")
        self.mistakes, self.confusion_matrix = mistakes, confusion_matrix

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        device, k = pl_module.device, self.mistakes
        self.matrix = MulticlassConfusionMatrix(num_classes=10).to(device)
        # The k most confident mistakes so far: confidence (-1: an empty slot), image, label, prediction.
        self.kept = (torch.full((k,), -1.0, device=device), torch.zeros(k, 28, 28, device=device),
                     torch.zeros(k, dtype=torch.long, device=device), torch.zeros(k, dtype=torch.long, device=device))

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        x, y = batch  # (B, 1, 28, 28), (B,); outputs: (B, 10) logits
        confidence, prediction = outputs.softmax(dim=1).max(dim=1)  # (B,), (B,)
        self.matrix.update(prediction, y)
        wrong = prediction != y
        new = (confidence[wrong], x[wrong].reshape(-1, 28, 28), y[wrong], prediction[wrong])
        merged = [torch.cat(pair) for pair in zip(self.kept, new)]
        keep = merged[0].topk(self.mistakes).indices
        self.kept = tuple(t[keep] for t in merged)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loggers = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if not loggers:
            return
        matrix = self.matrix.compute()  # summed over processes under DDP
        # Every process holds its own k most confident mistakes: gather them, keep the overall k.
        gathered = [pl_module.all_gather(t).reshape(-1, *t.shape[1:]) for t in self.kept]
        if not trainer.is_global_zero:
            return
        order = gathered[0].argsort(descending=True)[: self.mistakes]
        order = order[gathered[0][order] >= 0]  # not the empty slots
        figures = {}
        if self.confusion_matrix:
            figures["test/confusion_matrix"] = confusion_figure(matrix.cpu())
        if self.mistakes > 0:
            figures["test/mistakes"] = mistakes_figure(*(t[order].cpu() for t in gathered))
        for logger in loggers:
            for tag, figure in figures.items():
                logger.experiment.add_figure(tag, figure, global_step=trainer.global_step, close=False)


def confusion_figure(matrix: torch.Tensor) -> Figure:
    """The (10, 10) confusion matrix (rows: true digit, columns: predicted) drawn by torchmetrics."""
    figure = Figure(figsize=(7, 6.5), layout="constrained")
    ax = figure.add_subplot()
    MulticlassConfusionMatrix(num_classes=10).plot(val=matrix, ax=ax, cmap="Blues")
    accuracy = matrix.diagonal().sum() / matrix.sum().clamp(min=1)
    ax.set_title(f"Test confusion matrix: {int(matrix.sum())} images, accuracy {accuracy:.2%}")
    return figure


def mistakes_figure(confidence: torch.Tensor, images: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor,
                    columns: int = 8) -> Figure:  # fmt: skip
    """A grid of (N, 28, 28) images titled "true -> predicted (probability)", most confident first."""
    rows = max(1, math.ceil(len(images) / columns))
    pad, cell = 10, 38  # grid pixels: the padding, and a 28 x 28 image with the padding before it
    # TensorBoard shows the figure shrunk to its card's width: captions as large as the digits' strokes. One image
    # of them all, not an axes per digit, which took several times as long to draw (docs/speed.md, "The figures").
    height = 1.5 * columns * (rows * cell + pad) / (columns * cell + pad) + 0.6  # inches: the grid's, the title's
    figure = Figure(figsize=(1.5 * columns, height))
    figure.suptitle("Most confident mistakes: true -> predicted (probability)", fontsize=18)
    ax = figure.add_axes((0, 0, 1, 1 - 0.6 / height))
    ax.set_axis_off()
    if len(images) == 0:
        ax.text(0.5, 0.5, "no mistakes", ha="center", va="center")
        return figure
    grid = make_grid(images[:, None], nrow=columns, padding=pad, normalize=True, scale_each=True, pad_value=1)
    if len(images) == 1:  # make_grid gives a lone image back without its padding
        grid = torch.nn.functional.pad(grid, (pad, pad, pad, pad), value=1)
    ax.imshow(grid[0], cmap="gray", vmin=0, vmax=1)  # (3, H, W): its channels are copies
    ax.set_xlim(-0.5, columns * cell + pad - 0.5)  # a short last row's cells as wide as a full row's
    titles = zip(labels.tolist(), predictions.tolist(), confidence.tolist())
    for i, (label, prediction, p) in enumerate(titles):
        x, y = (i % columns) * cell + pad + 14, (i // columns) * cell + pad - 1  # above the image's middle
        ax.text(x, y, f"{label} -> {prediction} ({p:.0%})", fontsize=14, ha="center", va="bottom")
    return figure
