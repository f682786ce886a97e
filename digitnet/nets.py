"""The networks: plain nn.Modules from normalized (B, 1, 28, 28) images to (B, 10) logits, no Lightning needed."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from digitnet.errors import DigitnetError


class Dropout(nn.Dropout):
    """nn.Dropout with its CPU mask drawn as uniform noise >= p: the same distribution as `bernoulli_`'s, faster
    (docs/speed.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        return x * torch.rand_like(x).ge_(self.p).mul_(1 / (1 - self.p))  # (B, H) mask: 0 or 1/(1-p)


class Layers(nn.Sequential):
    """nn.Sequential whose slice is a plain nn.Sequential of its layers (`net[:-1]`, a feature extractor): nn.Sequential
    would build its own class from the layers, whose `__init__` here takes settings."""

    def __getitem__(self, index: int | slice) -> nn.Module:
        if isinstance(index, slice):
            return nn.Sequential(OrderedDict(list(self.named_children())[index]))
        return super().__getitem__(index)


class MLP(Layers):
    """Flatten -> [Linear -> ReLU -> Dropout] per hidden layer -> Linear to class logits.

    Defaults: the Keras report's model, 784-512-512-10, dropout 0.2, Keras's Glorot-uniform weights and zero biases.

    Args:
        hidden_sizes: Width of each hidden layer.
        dropout: Dropout probability after each hidden layer.
    """

    def __init__(self, hidden_sizes: tuple[int, ...] = (512, 512), dropout: float = 0.2) -> None:
        if not 0 <= dropout < 1:
            raise DigitnetError(f"--model.net.dropout must be in [0, 1), got {dropout}")
        self.hidden_sizes, self.dropout = tuple(hidden_sizes), dropout
        layers: list[nn.Module] = [nn.Flatten()]  # (B, 1, 28, 28) -> (B, 784)
        width = 28 * 28
        for size in self.hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU(), Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 10))  # (B, hidden) -> (B, 10) logits
        super().__init__(*layers)
        for layer in self:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)


def conv_block(cin: int, cout: int, pool: bool = False, pool_first: bool = False) -> list[nn.Module]:
    # No conv bias: the batch norm after it has its own shift.
    layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    if pool:  # pooled first, the batch norm and ReLU work on a quarter of the pixels (as cifar10-airbench orders them)
        layers.insert(1 if pool_first else 3, nn.MaxPool2d(2))
    return layers


class ConvNet(Layers):
    """A small VGG-style convolutional network with batch norm, 3x3 convolutions and max-pooling.

    (B, 1, 28, 28) -> conv w @28 -> pool -> conv 2w, conv 2w @14 -> pool -> conv 4w @7 -> pool -> (B, 4w, 3, 3)
    -> dropout, linear -> (B, 10). Pooled to 3x3, not averaged, so the last layer sees where strokes lie (6 vs 9).

    Args:
        width: Channels of the first convolution; the next ones have 2x and 4x as many. Multiples of 16 run far
            faster on the CPU (docs/nets.md).
        dropout: Dropout probability before the last layer.
        pool_first: Max-pool each pooled convolution's output before its batch norm and ReLU, not after: less work
            in training, the same parameter shapes under other state_dict keys (docs/nets.md); False is the order of
            checkpoints written before it.
    """

    def __init__(self, width: int = 32, dropout: float = 0.2, pool_first: bool = False) -> None:
        if width < 1:
            raise DigitnetError(f"--model.net.width must be at least 1, got {width}")
        if not 0 <= dropout < 1:
            raise DigitnetError(f"--model.net.dropout must be in [0, 1), got {dropout}")
        self.width, self.dropout, self.pool_first = width, dropout, pool_first
        w, pooled = width, {"pool": True, "pool_first": pool_first}
        super().__init__(
            *conv_block(1, w, **pooled),  # (B, w, 14, 14)
            *conv_block(w, 2 * w), *conv_block(2 * w, 2 * w, **pooled),  # (B, 2w, 7, 7)
            *conv_block(2 * w, 4 * w, **pooled),  # (B, 4w, 3, 3)
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(36 * w, 10),  # (B, 36w) -> (B, 10) logits
        )  # fmt: skip
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Else torch's errors from inside a layer. Not while traced: its shapes are tensors there, their test a constant.
        if not torch.jit.is_tracing() and (x.ndim != 4 or x.shape[1:] != (1, 28, 28) or not x.is_floating_point()):
            raise DigitnetError(f"ConvNet takes float (N, 1, 28, 28) images (digitnet.images.preprocess makes one), "
                                f"got {tuple(x.shape)} {x.dtype}")  # fmt: skip
        # Channels last (NHWC), weights and input: oneDNN's and cuDNN's convolutions are faster on it than on NCHW.
        return super().forward(x.contiguous(memory_format=torch.channels_last))


class NumberNet(nn.Module):
    """A reader of whole numbers (a CRNN: convolutions, then a bidirectional GRU along the strip), trained with CTC.

    (B, 1, 28, W) normalized strips (`digitnet.strings.strip`, W a multiple of 4) -> conv w @28 -> pool -> conv 2w,
    conv 2w @14 -> pool -> conv 4w @7 -> (B, W/4, 28w) columns -> linear, ReLU -> GRU both ways -> (B, W/4, 12)
    logits: the ten digits, "?" (a mark that is no digit) and CTC's blank.

    Args:
        width: Channels of the first convolution; the next ones have 2x and 4x as many.
        hidden: Units of the GRU in each direction.
    """

    def __init__(self, width: int = 32, hidden: int = 128) -> None:
        super().__init__()
        if width < 1 or hidden < 1:
            raise DigitnetError(f"NumberNet's width and hidden must be at least 1, got {width} and {hidden}")
        self.width, self.hidden = width, hidden
        w = width
        self.features = nn.Sequential(*conv_block(1, w, pool=True), *conv_block(w, 2 * w),
                                      *conv_block(2 * w, 2 * w, pool=True), *conv_block(2 * w, 4 * w))  # fmt: skip
        self.columns = nn.Linear(4 * w * 7, 2 * hidden)
        self.gru = nn.GRU(2 * hidden, hidden, batch_first=True, bidirectional=True)
        self.classes = nn.Linear(2 * hidden, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)  # (B, 4w, 7, W/4)
        b, c, h, t = f.shape
        f = torch.relu(self.columns(f.permute(0, 3, 1, 2).reshape(b, t, c * h)))  # (B, W/4, 2 * hidden)
        return self.classes(self.gru(f)[0])  # (B, W/4, 12)


NETS = ("MLP", "ConvNet")  # digitnet's own, named on the command line by these bare names
