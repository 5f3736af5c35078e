"""The real MNIST digits in ../shared, laid out for torchvision when they are there."""

import os
import subprocess
import sys
from pathlib import Path

SHARED_ENV = "CNNLESSON_SHARED"
REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    """`$CNNLESSON_SHARED`, else the `shared/` folder beside the repo, if it holds the MNIST split tool."""
    folder = Path(os.environ.get(SHARED_ENV) or REPO.parent / "shared")
    return folder if (folder / "tools" / "mnist_real_split.py").is_file() else None


def real_mnist_root(work: Path, num_train: int = 8000) -> Path | None:
    """Lay out the 10,000 real test digits as `num_train` train / the rest test; None without ../shared."""
    shared = shared_dir()
    if shared is None:
        return None
    root = work / f"real-mnist-{num_train}"
    if not (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").exists():
        tool = shared / "tools" / "mnist_real_split.py"
        subprocess.run(
            [sys.executable, str(tool), str(root), "--train", str(num_train)], check=True, capture_output=True
        )
    return root


MISSING = (
    "skipped: the real MNIST digits (../shared/data/mnist-t10k and ../shared/tools/mnist_real_split.py) "
    f"are not beside this clone; set {SHARED_ENV} to the folder that holds them"
)


def timing_digits(work: Path, quick: bool, name: str, num_train: int) -> tuple[Path, str]:
    """A data root to time training on, and what it holds: the real split, else stand-in digits.

    Quick mode (the tests) always uses `num_train` stand-in digits under `work/name`.
    """
    root = None if quick else real_mnist_root(work)
    if root is not None:
        return root, "real MNIST digits (../shared split)"
    from cnnlesson.standin import write_standin_mnist

    root = work / name
    write_standin_mnist(root, num_train=num_train if quick else 4000, num_test=64)
    return root, "stand-in digits"
