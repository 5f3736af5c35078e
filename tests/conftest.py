"""Shared fixtures: small stand-in data sets in the real on-disk formats.

They are written once per test session with cnnlesson's own writers, so
torchvision's real MNIST and CIFAR-10 parsers read them, offline.
"""

import os

import matplotlib
import pytest

# Figures are drawn off-screen in tests, whatever the machine has.
matplotlib.use("Agg")
# Tests pick their device explicitly; a CNNLESSON_DEVICE left in the shell
# would otherwise change what get_device() returns under test.
os.environ.pop("CNNLESSON_DEVICE", None)


def pytest_addoption(parser):
    parser.addoption(
        "--torch-device",
        default=None,
        # Not --device: pytest-playwright owns that one (an emulated phone or tablet).
        help="run every page block with this device (cpu, cuda, mps) as cnnlesson's default "
        "(CNNLESSON_DEVICE); an unavailable device fails the blocks instead of falling back",
    )


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory):
    """A data root holding stand-in MNIST under MNIST/raw (IDX files)."""
    from cnnlesson.data import write_standin_mnist

    root = tmp_path_factory.mktemp("mnist-data")
    write_standin_mnist(root, num_train=512, num_test=256, seed=0)
    return root


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory):
    """A data root holding stand-in CIFAR-10 under cifar-10-batches-py/."""
    from cnnlesson.data import write_standin_cifar10

    root = tmp_path_factory.mktemp("cifar-data")
    write_standin_cifar10(root, num_train=200, num_test=100, seed=0)
    return root


@pytest.fixture(scope="session")
def docs_hook():
    """Import a build hook from docs/hooks/ the way mkdocs does: by its path."""
    import importlib.util
    from pathlib import Path

    hooks = Path(__file__).resolve().parents[1] / "docs" / "hooks"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", hooks / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
