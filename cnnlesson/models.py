"""The lesson's networks, exactly as lesson 07 defines them.

`MNISTNet` (section 5), `CNNWithBN` (section 8) and `CIFAR10Net` (section 9)
keep the lesson's attribute names, layers and shapes; `LeNet5` is built from
the lesson's LeNet-5 diagram (section 3). Only torch is needed here.

One addition to the lesson's code: each `forward` first checks its input's
shape, because the lesson's `x.view(-1, ...)` would silently fold a batch of
wrongly sized images into a different number of rows.
"""

from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F


def _check_input(net: nn.Module, x: torch.Tensor) -> None:
    """Raise unless `x` is a (batch, *net.input_shape) tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    # A class attribute of each net; nn.Module's __getattr__ would have mypy read it as a Tensor or Module.
    shape = cast(tuple[int, ...], net.input_shape)
    if x.dim() != 4 or tuple(x.shape[1:]) != shape:
        expected = ", ".join(map(str, ("batch", *shape)))
        raise ValueError(f"x: {type(net).__name__} expects a ({expected}) batch, got shape {tuple(x.shape)}")


class MNISTNet(nn.Module):
    """Two conv blocks and two fully connected layers for 28x28 digits."""

    input_shape = (1, 28, 28)

    def __init__(self):
        super().__init__()
        # Conv block 1
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.pool1 = nn.MaxPool2d(2, 2)
        # Conv block 2
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool2 = nn.MaxPool2d(2, 2)
        # FC block
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a (batch, 1, 28, 28) batch to (batch, 10) class scores."""
        _check_input(self, x)
        # x: (batch, 1, 28, 28)
        x = F.relu(self.conv1(x))  # (batch, 32, 28, 28)
        x = self.pool1(x)  # (batch, 32, 14, 14)
        x = F.relu(self.conv2(x))  # (batch, 64, 14, 14)
        x = self.pool2(x)  # (batch, 64, 7, 7)
        x = x.view(-1, 64 * 7 * 7)  # Flatten
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return x


class CNNWithBN(nn.Module):
    """One conv block with batch norm and 2-D dropout, for 28x28 digits."""

    input_shape = (1, 28, 28)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)  # BN for Conv
        self.pool = nn.MaxPool2d(2, 2)
        self.dropout = nn.Dropout2d(0.25)  # 2D Dropout
        self.fc1 = nn.Linear(32 * 14 * 14, 128)
        self.bn_fc = nn.BatchNorm1d(128)  # BN for FC
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a (batch, 1, 28, 28) batch to (batch, 10) class scores."""
        _check_input(self, x)
        x = self.conv1(x)
        x = self.bn1(x)
        x = F.relu(x)
        x = self.pool(x)
        x = self.dropout(x)
        x = x.view(-1, 32 * 14 * 14)
        x = self.fc1(x)
        x = self.bn_fc(x)
        x = F.relu(x)
        x = self.fc2(x)
        return x


class CIFAR10Net(nn.Module):
    """A VGG-style stack of four conv layers for 32x32 RGB images."""

    input_shape = (3, 32, 32)

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),  # 32→16
            nn.Conv2d(64, 128, 3, padding=1),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.Conv2d(128, 128, 3, padding=1),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),  # 16→8
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(128 * 8 * 8, 256),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(256, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a (batch, 3, 32, 32) batch to (batch, 10) class scores."""
        _check_input(self, x)
        x = self.features(x)
        x = x.view(-1, 128 * 8 * 8)
        x = self.classifier(x)
        return x


class LeNet5(nn.Module):
    """LeNet-5 (1998) as the lesson's diagram draws it, with ReLU and max pooling.

    MNIST's 28x28 digits are padded by 2 pixels to the 32x32 input LeNet-5
    expects (`cnnlesson.data.mnist_transform(pad=2)`).
    """

    input_shape = (1, 32, 32)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)  # 32x32x1 -> 28x28x6
        self.pool1 = nn.MaxPool2d(2, 2)  # -> 14x14x6
        self.conv2 = nn.Conv2d(6, 16, 5)  # -> 10x10x16
        self.pool2 = nn.MaxPool2d(2, 2)  # -> 5x5x16
        self.fc1 = nn.Linear(16 * 5 * 5, 120)  # 400 -> 120
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a (batch, 1, 32, 32) batch to (batch, 10) class scores."""
        _check_input(self, x)
        x = self.pool1(F.relu(self.conv1(x)))  # (batch, 6, 14, 14)
        x = self.pool2(F.relu(self.conv2(x)))  # (batch, 16, 5, 5)
        x = torch.flatten(x, 1)  # (batch, 400)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


MODELS: dict[str, type[MNISTNet | CNNWithBN | CIFAR10Net | LeNet5]] = {
    "mnistnet": MNISTNet,
    "cnnwithbn": CNNWithBN,
    "cifar10net": CIFAR10Net,
    "lenet5": LeNet5,
}


def build_model(name: str) -> MNISTNet | CNNWithBN | CIFAR10Net | LeNet5:
    """Return a freshly initialised model by its lower-case name in `MODELS`.

    Raises:
        TypeError: if `name` is not a string.
        ValueError: if `name` is not one of `MODELS`.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str such as 'mnistnet', got {type(name).__name__}")
    key = name.lower()
    if key not in MODELS:
        raise ValueError(f"name: unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[key]()


def count_parameters(net: nn.Module, trainable_only: bool = True) -> int:
    """Count the parameters of `net` (only those that require grad, by default)."""
    if not isinstance(net, nn.Module):
        raise TypeError(f"net: expected a torch.nn.Module, got {type(net).__name__}")
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)
