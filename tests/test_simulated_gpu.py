"""Every page block and the CLI's three commands on a simulated GPU (meta tensors), on any CPU.

A simulation (tests/simulated_accelerator.py): it proves where tensors live,
not what they hold, so printed outputs are not compared here; the real CUDA
run stays the job of the GPU workflow. Deselect with `-m "not simulated_gpu"`.
"""

import ast
import dataclasses
import importlib
import importlib.util
import json
import linecache
import pkgutil
import shutil
import sys

import matplotlib.pyplot as plt
import pytest
import torch
from simulated_accelerator import SIMULATED, DeviceMixError, simulated_gpu
from test_docs import BLOCKS, DOCS, collect, read_cifar10_as_standin, record_for, records_saved_at_end, run_block

from cnnlesson import cli
from cnnlesson.models import MNISTNet
from cnnlesson.standin import write_standin_cifar10, write_standin_mnist

pytestmark = pytest.mark.simulated_gpu
page_runs = pytest.fixture(records_saved_at_end, scope="module", name="page_runs")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The smallest stand-in data the pages run on: the simulation's cost is reading it."""
    root = tmp_path_factory.mktemp("tiny-data")
    write_standin_mnist(root, num_train=64, num_test=32, seed=0)
    write_standin_cifar10(root, num_train=50, num_test=20, seed=0)
    return root


@pytest.fixture
def sim_reader_dir(tmp_path, monkeypatch, tiny_data):
    """A fresh working directory holding `data/`; no device forced from outside."""
    shutil.copytree(tiny_data, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("CNNLESSON_DEVICE", raising=False)  # the simulation is of "auto" finding a GPU
    read_cifar10_as_standin(monkeypatch)
    return tmp_path


def without_asserts(code: str) -> str:
    """`code` with each assert statement turned into `pass`, line numbers kept.

    A page's asserts check values (the loss falls, the accuracy beats chance),
    and values are fake on the simulated GPU; what is checked here is where
    tensors live.
    """
    lines = code.splitlines(keepends=True)
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Assert):
            first = lines[node.lineno - 1]
            lines[node.lineno - 1] = first[: node.col_offset] + "pass\n"
            for i in range(node.lineno, node.end_lineno):
                lines[i] = "\n"
    return "".join(lines)


def run_on_simulated_gpu(block_id: str, block) -> None:
    """Run one page block on the simulated GPU; a device mix fails naming the page, line and op."""
    block = dataclasses.replace(block, expected_output=None, code=without_asserts(block.code))  # values are fake here
    # Give the block's code to linecache, so a device mix quotes the page's line.
    name = f"<block at line {block.lineno}>"
    linecache.cache[name] = (len(block.code), None, block.code.splitlines(keepends=True), name)
    try:
        with simulated_gpu():
            run_block(block)
    except AssertionError as err:
        raise AssertionError(f"{block_id} on the simulated GPU: {err}") from err.__cause__


@pytest.mark.parametrize(("block_id", "block"), BLOCKS, ids=[block_id for block_id, _ in BLOCKS])
def test_page_block_on_simulated_gpu(block_id, block, sim_reader_dir, page_runs):
    # Recorded as the simulated GPU, never as a GPU: runs.json and the pages keep the two apart.
    record_for(page_runs, "simulated GPU").run(block_id, lambda: run_on_simulated_gpu(block_id, block))


def test_cli_commands_on_simulated_gpu(sim_reader_dir, capsys):
    out = sim_reader_dir / "run"
    mnistnet = ["train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", "data", "--out", str(out)]
    checkpoint = ["--checkpoint", str(out / "checkpoint.pt"), "--data-root", "data"]
    with simulated_gpu():
        assert cli.main([*mnistnet, "--epochs", "1", "--seed", "0"]) == 0
        assert "training on meta" in capsys.readouterr().out  # the simulated GPU was used
        # Before resume loaded to the CPU, Adam's step counters stayed on the device
        # and were read back every step (here as zeros: Adam then divided by zero).
        assert cli.main([*mnistnet, "--epochs", "2", "--resume"]) == 0
        # The lesson's DataLoader path and LeNet-5's padded input.
        lenet = ["--model", "lenet5", "--dataset", "mnist", "--data-root", "data", "--dataloader"]
        assert cli.main(["train", *lenet, "--epochs", "1", "--out", str(out / "lenet5")]) == 0
        assert cli.main(["evaluate", *checkpoint]) == 0
        assert cli.main(["visualize", *checkpoint, "--out", str(out / "figures")]) == 0
    assert len(json.loads((out / "history.json").read_text())) == 2
    figures = ["feature_maps.png", "filters.png", "history.png", "predictions.png"]
    assert sorted(p.name for p in (out / "figures").iterdir()) == figures
    # Adam's step counters were left on the CPU, as on CUDA without capturable=True.
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    steps = [s["step"] for s in state["optimizer_state"]["state"].values()]
    assert steps and all(step.device.type == "cpu" for step in steps)


# --- Negative controls: the simulation catches what CUDA would --------------------

TRAIN_THEN = """\
```python
import torch
from cnnlesson.data import get_dataloaders
from cnnlesson.device import get_device
from cnnlesson.models import MNISTNet
from cnnlesson.train import train

train_loader, _ = get_dataloaders("mnist", "data", batch_size=32)
net = MNISTNet()
train(net, train_loader, num_epochs=1, device=get_device(), progress=False)
{line}
```
"""


def planted(tmp_path, line: str):
    page = tmp_path / "planted.md"
    page.write_text(TRAIN_THEN.format(line=line))
    ((block_id, block),) = collect([page])
    return block_id, block


def test_planted_device_mix_fails_naming_page_line_and_op(tmp_path, sim_reader_dir):
    """A planted bug: a CPU input to a net that train() left on the GPU."""
    block_id, block = planted(tmp_path, "net(torch.randn(1, 1, 28, 28))")
    with pytest.raises(AssertionError) as caught:
        run_on_simulated_gpu(block_id, block)
    message = str(caught.value)
    assert message.startswith("planted.md:1 on the simulated GPU: block at line 1 raised DeviceMixError")
    assert "aten.convolution.default" in message and "(1, 1, 28, 28)" in message
    assert "line 10 of the block at line 1: net(torch.randn(1, 1, 28, 28))" in message
    # Its fix passes: the input goes where the net is.
    block_id, block = planted(tmp_path, "net(torch.randn(1, 1, 28, 28).to(get_device()))")
    run_on_simulated_gpu(block_id, block)


def test_planted_numpy_on_a_device_tensor_fails(tmp_path, sim_reader_dir):
    """A second planted bug: `.numpy()` on a GPU tensor, a TypeError on CUDA too."""
    block_id, block = planted(tmp_path, "net.conv1.weight.detach().numpy()")
    with pytest.raises(AssertionError, match="raised TypeError: can't convert meta device type tensor to numpy"):
        run_on_simulated_gpu(block_id, block)
    block_id, block = planted(tmp_path, "net.conv1.weight.detach().cpu().numpy()")
    run_on_simulated_gpu(block_id, block)


def test_the_same_planted_bug_passes_unnoticed_on_the_cpu(tmp_path, sim_reader_dir, monkeypatch):
    """Why the simulation exists: the CPU suite alone cannot see the first bug."""
    monkeypatch.setenv("CNNLESSON_DEVICE", "cpu")  # a machine with a real GPU would see it
    _, block = planted(tmp_path, "net(torch.randn(1, 1, 28, 28))")
    run_block(block)


# --- The simulation follows CUDA's rules ------------------------------------------


def test_what_cuda_allows_is_allowed_and_reads_back_zeros():
    with simulated_gpu():
        from cnnlesson.device import get_device

        device = get_device()
        assert device == SIMULATED and get_device("cuda") == SIMULATED and get_device("cpu").type == "cpu"
        x = torch.ones(4, 3, device=device)
        y = x * torch.tensor(2.0)  # a 0-dim CPU scalar
        rows = x[torch.tensor([0, 2])]  # a CPU index tensor
        mask = x[torch.tensor([True, False, True, False])]
        assert rows.device == SIMULATED and mask.device == SIMULATED and tuple(rows.shape) == (2, 3)
        back = y.cpu()
        assert back.device.type == "cpu" and torch.equal(back, torch.zeros(4, 3))
        assert y.sum().item() == 0.0 and int(y.sum().long()) == 0 and y[0].tolist() == [0.0, 0.0, 0.0]
        assert (y > 0).any().item() is False
        host = torch.ones(4, 3)
        host.copy_(y)
        assert torch.equal(host, torch.zeros(4, 3))
        with pytest.raises(TypeError, match="can't convert meta device type tensor to numpy"):
            y.numpy()
        with pytest.raises(DeviceMixError, match=r"aten\.add\.Tensor .* shape \(4, 3\)"):
            x + torch.ones(4, 3)
        with pytest.raises(DeviceMixError, match=r"aten\.index\.Tensor .* shape \(4, 3\)"):
            torch.ones(4, 3)[torch.tensor([0, 2], device=device)]  # device indices into a CPU tensor


def test_simulation_is_off_outside_the_block():
    import cnnlesson.device

    real = cnnlesson.device.get_device
    with simulated_gpu():
        assert cnnlesson.device.get_device() == SIMULATED
    assert cnnlesson.device.get_device is real
    assert cnnlesson.device.get_device().type in ("cpu", "cuda", "mps")
    # Plain meta is not enough, which is why the mode exists: this mix returns garbage, no error.
    weight = torch.ones(1, 1, 3, 3, device="meta")
    assert torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), weight).device.type == "cpu"
    with simulated_gpu(), pytest.raises(DeviceMixError, match=r"aten\.convolution\.default .* shape \(1, 1, 4, 4\)"):
        torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), weight)


def test_the_simulation_patches_get_device_in_its_one_home():
    """No module of the package holds a reference of its own, which the simulation would miss."""
    import cnnlesson

    holders = []
    for info in pkgutil.iter_modules(cnnlesson.__path__):
        if info.name not in ("__main__", "device"):  # importing __main__ would run the command line
            module = importlib.import_module(f"cnnlesson.{info.name}")
            holders += [info.name] if "get_device" in vars(module) else []
    assert holders == []


def test_a_torch_without_the_private_module_skips_instead_of_breaking(monkeypatch):
    import simulated_accelerator

    monkeypatch.setitem(sys.modules, "torch.utils._python_dispatch", None)  # as if a future torch moved it
    spec = importlib.util.spec_from_file_location("simulated_accelerator_without", simulated_accelerator.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.SKIP_REASON.startswith("simulated accelerator unavailable: torch ")
    assert "torch.utils._python_dispatch.TorchDispatchMode" in module.SKIP_REASON
    with pytest.raises(pytest.skip.Exception, match="simulated accelerator unavailable"), module.simulated_gpu():
        pass


def test_evaluate_puts_the_net_back_on_its_device(mnist_root):
    from cnnlesson.data import get_dataloaders
    from cnnlesson.train import evaluate

    _, test_loader = get_dataloaders("mnist", mnist_root)
    net = MNISTNet().train()
    with simulated_gpu():
        evaluate(net, test_loader, "cuda")
    assert {p.device.type for p in net.parameters()} == {"cpu"} and net.training


def test_in_memory_data_goes_to_the_gpu_get_device_picks(mnist_root):
    from cnnlesson.data import get_dataloaders

    with simulated_gpu():
        for device in (None, "auto", "cuda"):
            train_loader, test_loader = get_dataloaders("mnist", mnist_root, in_memory=True, device=device)
            assert train_loader.X.device == SIMULATED and test_loader.y.device == SIMULATED, device
    from cnnlesson.device import get_device

    train_loader, _ = get_dataloaders("mnist", mnist_root, in_memory=True, device="cpu")
    assert train_loader.X.device.type == "cpu"
    train_loader, _ = get_dataloaders("mnist", mnist_root, in_memory=True, device="auto")  # was a ValueError
    assert train_loader.X.device.type == get_device("auto").type  # cuda:0 on a real GPU, where "auto" says cuda


def test_plot_im2col_takes_tensors_on_any_device():
    from cnnlesson.viz import plot_im2col

    image, kernel = torch.arange(12.0).reshape(3, 4), torch.ones(2, 2)
    on_cpu = plot_im2col(image, kernel)
    with simulated_gpu():
        from cnnlesson.device import get_device

        on_gpu = plot_im2col(image.to(get_device()), kernel.to(get_device()))
    assert len(on_cpu.axes) == len(on_gpu.axes) == 4
    plt.close(on_cpu)
    plt.close(on_gpu)


def test_mnist_page_says_the_lessons_loop_runs_on_the_cpu():
    text = (DOCS / "mnist.md").read_text(encoding="utf-8")
    loop_end = text.index('    print(f"epoch {epoch + 1}: last batch loss {loss.item():.4f}")\n```\n')
    after = text[loop_end:].split("\n\n")[1]
    assert "trains on the CPU" in after and "(conv2d.md#on-a-gpu)" in after
    assert "## On a GPU" in (DOCS / "conv2d.md").read_text(encoding="utf-8")
