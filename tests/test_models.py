"""The lesson's models: output shapes, the shapes its comments state, parameter counts."""

import pytest
import torch
import torch.nn as nn

from cnnlesson.models import MODELS, CIFAR10Net, CNNWithBN, LeNet5, MNISTNet, build_model, count_parameters


def shapes_after(net, x, names):
    """Run `net` on `x` and return the output shape of each named submodule."""
    seen, hooks = {}, []
    for name in names:
        module = net.get_submodule(name)
        hooks.append(module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape))))
    net.eval()
    with torch.no_grad():
        out = net(x)
    for h in hooks:
        h.remove()
    return seen, tuple(out.shape)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_maps_its_input_to_ten_scores(name):
    net = build_model(name)
    out = net(torch.randn(3, *net.input_shape))  # train mode: BatchNorm1d needs a batch > 1
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()


def test_mnistnet_shapes_match_the_lesson_comments():
    seen, out = shapes_after(MNISTNet(), torch.randn(5, 1, 28, 28), ["conv1", "pool1", "conv2", "pool2", "fc1"])
    assert seen == {
        "conv1": (5, 32, 28, 28),
        "pool1": (5, 32, 14, 14),
        "conv2": (5, 64, 14, 14),
        "pool2": (5, 64, 7, 7),
        "fc1": (5, 128),
    }
    assert out == (5, 10)


def test_lenet5_shapes_match_the_lesson_diagram():
    seen, out = shapes_after(LeNet5(), torch.randn(2, 1, 32, 32), ["conv1", "pool1", "conv2", "pool2", "fc1", "fc2"])
    # 32x32x1 -> 28x28x6 -> 14x14x6 -> 10x10x16 -> 5x5x16 -> 400 -> 120 -> 84 -> 10
    assert seen == {
        "conv1": (2, 6, 28, 28),
        "pool1": (2, 6, 14, 14),
        "conv2": (2, 16, 10, 10),
        "pool2": (2, 16, 5, 5),
        "fc1": (2, 120),
        "fc2": (2, 84),
    }
    assert LeNet5().fc1.in_features == 400
    assert out == (2, 10)


def test_cnnwithbn_and_cifar10net_shapes():
    seen, _ = shapes_after(CNNWithBN(), torch.randn(4, 1, 28, 28), ["pool", "bn_fc"])
    assert seen == {"pool": (4, 32, 14, 14), "bn_fc": (4, 128)}
    seen, _ = shapes_after(CIFAR10Net(), torch.randn(2, 3, 32, 32), ["features.6", "features"])
    assert seen == {"features.6": (2, 64, 16, 16), "features": (2, 128, 8, 8)}  # 32→16, 16→8


def test_attribute_names_are_the_lessons():
    assert [n for n, _ in MNISTNet().named_children()] == ["conv1", "pool1", "conv2", "pool2", "fc1", "fc2"]
    assert [n for n, _ in CNNWithBN().named_children()] == ["conv1", "bn1", "pool", "dropout", "fc1", "bn_fc", "fc2"]
    assert [n for n, _ in CIFAR10Net().named_children()] == ["features", "classifier"]
    assert isinstance(CNNWithBN().dropout, nn.Dropout2d) and CNNWithBN().dropout.p == 0.25


# Counted by hand: a conv has out*(in*k*k + 1) weights, a linear out*(in + 1), a BN 2*channels.
PARAMETERS = {
    "mnistnet": 32 * (9 + 1) + 64 * (32 * 9 + 1) + 128 * (3136 + 1) + 10 * (128 + 1),
    "cnnwithbn": 32 * (9 + 1) + 2 * 32 + 128 * (32 * 14 * 14 + 1) + 2 * 128 + 10 * (128 + 1),
    "cifar10net": (64 * 28 + 64 * 577 + 128 * 577 + 128 * 1153) + 2 * (64 + 64 + 128 + 128) + 256 * 8193 + 10 * 257,
    "lenet5": 6 * 26 + 16 * 151 + 120 * 401 + 84 * 121 + 10 * 85,
}


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_parameter_counts(name):
    assert count_parameters(build_model(name)) == PARAMETERS[name]


def test_count_parameters_skips_frozen_unless_asked():
    net = MNISTNet()
    net.conv1.requires_grad_(False)
    assert count_parameters(net) == PARAMETERS["mnistnet"] - 320
    assert count_parameters(net, trainable_only=False) == PARAMETERS["mnistnet"]
    with pytest.raises(TypeError, match="net: expected a torch.nn.Module, got list"):
        count_parameters([1, 2])


def test_build_model_errors():
    assert isinstance(build_model("LeNet5"), LeNet5)
    with pytest.raises(ValueError, match=r"name: unknown model 'resnet'; expected one of \['cifar10net'"):
        build_model("resnet")
    with pytest.raises(TypeError, match="name: expected a str"):
        build_model(MNISTNet)


WRONG_SHAPES = [
    ("mnistnet", (2, 1, 56, 56)),  # view(-1, 3136) would fold it into 8 rows
    ("cnnwithbn", (2, 1, 56, 56)),
    ("cifar10net", (2, 3, 64, 32)),
    ("lenet5", (2, 1, 28, 28)),
    ("mnistnet", (1, 28, 28)),  # unbatched
    ("cifar10net", (2, 1, 32, 32)),
]


@pytest.mark.parametrize("name, shape", WRONG_SHAPES, ids=[f"{n}-{'x'.join(map(str, s))}" for n, s in WRONG_SHAPES])
def test_models_refuse_a_wrong_input_shape_naming_the_expected_one(name, shape):
    net = build_model(name).eval()
    expected = ", ".join(map(str, ("batch", *net.input_shape)))
    with pytest.raises(
        ValueError,
        match=rf"x: {type(net).__name__} expects a \({expected}\) batch, got shape \({', '.join(map(str, shape))},?\)",
    ):
        net(torch.zeros(shape))


def test_models_refuse_a_non_tensor():
    with pytest.raises(TypeError, match="x: expected a torch.Tensor, got ndarray"):
        MNISTNet()(torch.zeros(1, 1, 28, 28).numpy())


# --- the pages' verbatim copies of the lesson's models behave like the package's ----------

from lesson_code import page_definition  # noqa: E402

PAGE_MODELS = [("mnist.md", MNISTNet), ("batchnorm.md", CNNWithBN), ("cifar10.md", CIFAR10Net)]


def _digits(root, dataset: str, n: int = 16) -> torch.Tensor:
    """A batch of images read from disk through the lesson's own transform."""
    from cnnlesson.data import load_cifar10, load_mnist

    data = load_mnist(root) if dataset == "mnist" else load_cifar10(root, standin=True)
    return torch.stack([data[k][0] for k in range(n)])


@pytest.mark.parametrize("page, package_class", PAGE_MODELS, ids=[cls.__name__ for _, cls in PAGE_MODELS])
def test_page_model_behaves_like_the_package(page, package_class, mnist_root, cifar_root):
    page_class = page_definition(page, package_class.__name__)
    assert page_class is not package_class
    torch.manual_seed(0)
    package = package_class()
    copy = page_class()
    copy.load_state_dict(package.state_dict())  # the same weights (names and shapes must match)
    x = _digits(cifar_root, "cifar10") if package_class is CIFAR10Net else _digits(mnist_root, "mnist")

    # Train mode under the same seed: the same dropout masks, batch statistics and gradients.
    package.train(), copy.train()
    outputs = []
    for net in (package, copy):
        torch.manual_seed(123)
        out = net(x)
        out.logsumexp(1).sum().backward()
        outputs.append(out.detach())
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    for (name, p), (_, q) in zip(package.named_parameters(), copy.named_parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, msg=name)
    for (name, a), (_, b) in zip(package.state_dict().items(), copy.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)  # BN running statistics moved alike

    # Eval mode: deterministic, running statistics used, the same answer.
    package.eval(), copy.eval()
    with torch.no_grad():
        torch.testing.assert_close(package(x), copy(x), rtol=0, atol=0)

    if any(isinstance(m, (nn.Dropout, nn.Dropout2d)) for m in package.modules()):
        # The train-mode check is not vacuous: another seed gives other dropout masks.
        package.train()
        torch.manual_seed(124)
        assert not torch.equal(package(x).detach(), outputs[0])
