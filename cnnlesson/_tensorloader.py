"""In-memory batches for `cnnlesson.data.get_dataloaders(in_memory=True)`: a DataLoader without per-sample work."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from cnnlesson._checks import check_int


class TensorLoader:
    """Batches of in-memory tensors: a DataLoader without per-sample work.

    Shuffling draws from torch's global RNG (like DataLoader) unless `seed`
    gives the loader its own generator.
    """

    def __init__(
        self, X: torch.Tensor, y: torch.Tensor, batch_size: int = 64, shuffle: bool = False, seed: int | None = None
    ):
        if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError(f"X, y: expected torch.Tensors, got {type(X).__name__} and {type(y).__name__}")
        if len(X) != len(y):
            raise ValueError(f"X, y: expected the same length, got {len(X)} and {len(y)}")
        self.X, self.y = X, y
        self.batch_size, self.shuffle = check_int("batch_size", batch_size, 1), shuffle
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.X) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.X)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.X.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.X[idx], self.y[idx]
