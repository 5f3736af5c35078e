"""Figures: what each draws, that it saves a real PNG, and its errors."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from cnnlesson.conv import conv2d_numpy
from cnnlesson.models import CIFAR10Net, LeNet5, MNISTNet
from cnnlesson.viz import (
    first_conv,
    plot_filters,
    plot_history,
    plot_im2col,
    plot_images,
    plot_predictions,
    visualize_feature_maps,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def drawn_images(fig: Figure) -> int:
    return sum(len(ax.images) for ax in fig.axes)


def test_feature_maps_draw_one_panel_per_channel_and_save(tmp_path):
    fig = visualize_feature_maps(MNISTNet(), torch.randn(1, 1, 28, 28), tmp_path / "feature_maps.png")
    assert isinstance(fig, Figure) and len(fig.axes) == 32 + 1 and drawn_images(fig) == 32  # and a colour bar
    assert (tmp_path / "feature_maps.png").read_bytes().startswith(PNG)
    assert [p.name for p in tmp_path.iterdir()] == ["feature_maps.png"]
    # LeNet-5's conv1 has 6 channels: 6 maps, the rest of the 4x8 grid blank.
    assert drawn_images(visualize_feature_maps(LeNet5(), torch.randn(1, 32, 32))) == 6


def test_feature_maps_are_the_relu_of_conv1():
    net = MNISTNet()
    image = torch.randn(1, 1, 28, 28)
    fig = visualize_feature_maps(net, image)
    expected = torch.relu(net.conv1(image))[0, 5].detach().numpy()
    assert (fig.axes[5].images[0].get_array() == expected).all()


def test_feature_maps_share_one_colour_scale_from_zero():
    """Every map from 0 to the largest response of any map, so brightness compares across maps; a colour bar says so."""
    net = MNISTNet()
    image = torch.randn(1, 1, 28, 28)
    fig = visualize_feature_maps(net, image)
    with torch.no_grad():
        top = float(torch.relu(net.conv1(image)).max())
    limits = [ax.images[0].get_clim() for ax in fig.axes if ax.images]
    assert len(limits) == 32 and all(low == 0.0 and high == pytest.approx(top) for low, high in limits)
    (bar,) = [ax for ax in fig.axes if not ax.images]
    assert bar.get_ylabel() == "response after ReLU"


def test_first_conv_finds_conv1_or_the_first_conv2d():
    net = MNISTNet()
    assert first_conv(net) is net.conv1
    cifar = CIFAR10Net()
    assert first_conv(cifar) is cifar.features[0]
    with pytest.raises(ValueError, match="model: expected a model with a Conv2d layer, Linear has none"):
        first_conv(torch.nn.Linear(2, 2))


def test_filters_mark_the_chosen_ones_and_have_a_colour_bar():
    fig = plot_filters(MNISTNet().conv1, marked=[0, 5])
    filters = [ax for ax in fig.axes if ax.images]
    widths = [ax.spines["top"].get_linewidth() for ax in filters]
    assert [k for k, w in enumerate(widths) if w == 3.0] == [0, 5] and set(widths) == {3.0, 0.5}
    assert [ax.get_ylabel() for ax in fig.axes if not ax.images] == ["weight"]
    with pytest.raises(ValueError, match=r"marked: expected filter indices in \[0, 32\), got \[32\]"):
        plot_filters(MNISTNet().conv1, marked=[32])


def test_filters_one_image_per_output_channel():
    assert drawn_images(plot_filters(MNISTNet().conv1)) == 32
    assert drawn_images(plot_filters(LeNet5().conv2.weight)) == 16
    with pytest.raises(
        TypeError, match=r"conv: expected an nn.Conv2d or a 4-D weight \(out, in, kh, kw\), got \(3, 3\)"
    ):
        plot_filters(torch.zeros(3, 3))


def test_history_curves(tmp_path):
    history = [
        {"epoch": e, "train_loss": 1 / e, "train_accuracy": 0.5 + e / 10, "test_accuracy": 0.4 + e / 10}
        for e in (1, 2, 3)
    ]
    fig = plot_history(history, tmp_path / "h.svg")
    loss_ax, acc_ax = fig.axes
    assert list(loss_ax.lines[0].get_ydata()) == [1, 0.5, 1 / 3]
    assert [line.get_label() for line in acc_ax.lines] == ["train", "test"]
    assert (tmp_path / "h.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match="history: expected a non-empty list of dicts"):
        plot_history([])


def test_predictions_mark_wrong_ones_red():
    net = MNISTNet()
    images = torch.randn(4, 1, 28, 28)
    predicted = net.eval()(images).argmax(1)
    labels = predicted.clone()
    labels[1] = (labels[1] + 1) % 10
    fig = plot_predictions(net, images, labels)
    colours = [ax.title.get_color() for ax in fig.axes[:4]]
    assert colours == ["tab:green", "tab:red", "tab:green", "tab:green"]
    with pytest.raises(ValueError, match="labels: expected 4 labels"):
        plot_predictions(net, images, labels[:3])
    with pytest.raises(ValueError, match="images: expected a 4-D batch"):
        plot_predictions(net, images[0], labels)


def test_plot_images_side_by_side():
    fig = plot_images({"digit": torch.rand(28, 28), "edges": torch.rand(26, 26).numpy()})
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["digit", "edges"]
    with pytest.raises(ValueError, match=r"images\['x'\]: expected a 2-D array, got shape \(1, 2, 2\)"):
        plot_images({"x": torch.zeros(1, 2, 2)})
    with pytest.raises(ValueError, match="images: expected a non-empty mapping"):
        plot_images({})


def test_image_argument_errors():
    with pytest.raises(TypeError, match="image: expected a torch.Tensor, got list"):
        visualize_feature_maps(MNISTNet(), [[0.0]])
    with pytest.raises(ValueError, match=r"image: expected shape .* got \(2, 1, 28, 28\)"):
        visualize_feature_maps(MNISTNet(), torch.zeros(2, 1, 28, 28))


def cell_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_im2col_figure_shows_the_windows_as_columns_and_the_product():
    image = np.arange(20).reshape(4, 5)
    kernel = np.array([[1, -1, 2], [0, 3, 1]])
    fig = plot_im2col(image, kernel, position=(1, 2))
    source, row, columns, output = fig.axes
    assert cell_texts(row) == ["1", "-1", "2", "0", "3", "1"]
    # im2col is 6 x (3 * 3); column 1*3 + 2 = 5 holds the window at (1, 2), read row by row.
    matrix = np.array([float(t) for t in cell_texts(columns)]).reshape(6, 9)
    np.testing.assert_array_equal(matrix[:, 5], image[1:3, 2:5].ravel())
    result = np.array([float(t) for t in cell_texts(output)]).reshape(3, 3)
    np.testing.assert_array_equal(result, conv2d_numpy(image, kernel))
    assert columns.get_title() == "im2col: 6 × 9, column 5"


def test_im2col_titles_stay_over_their_own_panel():
    """No title reaches over a neighbouring panel (the output's title once covered the orange column)."""
    fig = plot_im2col(np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 0, 1, 2]]), np.array([[1, 0], [0, 1]]), position=(1, 2))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [ax.get_window_extent(renderer) for ax in fig.axes]
    for k, ax in enumerate(fig.axes):
        title = ax.title.get_window_extent(renderer)
        for other, box in enumerate(boxes):
            if other != k:
                assert title.x1 < box.x0 or title.x0 > box.x1 or title.y1 < box.y0 or title.y0 > box.y1, (k, other)


def test_im2col_figure_errors():
    with pytest.raises(ValueError, match=r"position: expected a window index in \[0, 3\) x \[0, 3\), got \(3, 0\)"):
        plot_im2col(np.zeros((4, 4)), np.ones((2, 2)), position=(3, 0))
    with pytest.raises(ValueError, match=r"kernel: expected at most the image's size \(2, 2\), got \(3, 3\)"):
        plot_im2col(np.zeros((2, 2)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="image, kernel: expected 2-D arrays"):
        plot_im2col(np.zeros((1, 4, 4)), np.ones((2, 2)))


def test_importing_viz_leaves_the_backend_to_the_reader():
    """cnnlesson.viz chooses no backend: a reader's matplotlib.use() or MPLBACKEND stands."""
    import os
    import subprocess
    import sys

    code = (
        "import matplotlib; matplotlib.use('svg'); import cnnlesson.viz; import matplotlib.pyplot as plt; "
        "print(plt.get_backend())"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "svg"


# --- The feature-maps page's verbatim visualize_feature_maps and the package's ---


def test_page_visualize_feature_maps_draws_what_the_package_draws(digit_roots, tmp_path, monkeypatch):
    """The same maps in the same grid; the page's function scales each map alone, the package's all alike."""
    from lesson_code import page_definition

    from cnnlesson.data import load_mnist

    page_function = page_definition("feature-maps.md", "visualize_feature_maps")
    assert page_function is not visualize_feature_maps
    monkeypatch.chdir(tmp_path)  # the lesson's function saves feature_maps.png in the working directory
    torch.manual_seed(0)
    model = MNISTNet()
    # Digits from disk through the lesson's transform: stand-ins, and real ones where ../shared has them.
    images = [load_mnist(root, train=False)[k][0][None] for root in digit_roots for k in range(3)]
    for image in images:  # each a batch of one, as the page passes it
        plt.close("all")
        page_function(model, image)
        page_fig = plt.gcf()
        assert (tmp_path / "feature_maps.png").read_bytes().startswith(PNG)
        package_fig = visualize_feature_maps(model, image)
        assert len(page_fig.axes) == 32 and len(package_fig.axes) == 32 + 1  # the package adds a colour bar
        top = max(float(ax.images[0].get_array().max()) for ax in page_fig.axes)
        for ours, theirs in zip(page_fig.axes, package_fig.axes[:32], strict=True):
            assert len(ours.images) == len(theirs.images) == 1 and not ours.axison and not theirs.axison
            np.testing.assert_array_equal(ours.images[0].get_array(), theirs.images[0].get_array())
            assert ours.images[0].get_cmap().name == theirs.images[0].get_cmap().name == "viridis"
            mine = ours.images[0].get_array()
            assert ours.images[0].get_clim() == (mine.min(), mine.max())  # imshow's own stretch, map by map
            assert theirs.images[0].get_clim() == (0.0, pytest.approx(top))
    assert not model.training  # both leave the model in eval mode, as the lesson's does
