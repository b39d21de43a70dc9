"""BiSeNet face parsing (face-parsing.PyTorch): a checkpoint in the ``79999_iter.pth`` layout converts, and the
three heads' logits, torch's resizing and the parameter count equal the torch network's; face masks by class."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.models.bisenet import (
    CLASSES,
    FACE_CLASSES,
    BiSeNet,
    face_mask,
    resize_bilinear_align_corners,
    resize_nearest,
)
from faceflax.nn.resnet import IMAGENET_MEAN, IMAGENET_STD
from faceflax.weights.bisenet import convert_bisenet

torch = pytest.importorskip("torch")
# needs torch, so imported only once it is known present
from tests.models import torch_parsing_nets as nets
from tests.models.torch_random import randomize


def relative_error(expected, actual) -> float:
    expected = np.asarray(expected)
    return float(np.abs(expected - np.asarray(actual)).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def face_parsing(tmp_path_factory):
    """A random torch ``BiSeNet(19)`` and its state dict saved as ``79999_iter.pth`` is."""
    model = randomize(nets.BiSeNet(19))
    path = tmp_path_factory.mktemp("bisenet") / "79999_iter.pth"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.mark.parametrize("size", [(256, 256), (136, 200)])  # 136x200: strides 8/16/32 give 17x25, 9x13, 5x7
def test_logits_of_all_heads_match_torch(face_parsing, size):
    model, path = face_parsing
    images = np.random.default_rng(0).uniform(size=(1, *size, 3)).astype(np.float32)
    normalised = (images - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    with torch.no_grad():
        theirs = model(torch.from_numpy(normalised.transpose(0, 3, 1, 2)))
    ours = jax.jit(BiSeNet(return_aux=True).apply)(convert_bisenet(path), images)
    for expected, actual in zip(theirs, ours, strict=True):
        assert actual.shape == (1, *size, 19)
        assert relative_error(expected.permute(0, 2, 3, 1), actual) < 1e-4


def test_resizing_matches_torch_interpolate():
    rng = np.random.default_rng(1)
    for (h, w), size in [
        ((16, 16), (128, 128)),
        ((5, 7), (9, 13)),
        ((13, 25), (17, 25)),
        ((20, 9), (7, 1)),
        ((1, 4), (3, 4)),
    ]:
        x = rng.normal(size=(2, h, w, 3)).astype(np.float32)
        t = torch.from_numpy(x.transpose(0, 3, 1, 2))
        bilinear = torch.nn.functional.interpolate(t, size, mode="bilinear", align_corners=True).permute(0, 2, 3, 1)
        nearest = torch.nn.functional.interpolate(t, size, mode="nearest").permute(0, 2, 3, 1)
        np.testing.assert_allclose(resize_bilinear_align_corners(jnp.asarray(x), size), bilinear, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(resize_nearest(jnp.asarray(x), size), nearest)
    x = rng.normal(size=(1, 5, 7, 2)).astype(np.float32)  # align_corners: the corner pixels are kept exactly
    corners = np.asarray(resize_bilinear_align_corners(jnp.asarray(x), (9, 4)))[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    np.testing.assert_array_equal(corners, x[:, [0, 0, -1, -1], [0, -1, 0, -1]])


def test_parameter_count_equals_torch(face_parsing):
    model, _ = face_parsing
    shapes = jax.eval_shape(BiSeNet().init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    ours = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
    assert ours == sum(p.numel() for p in model.parameters()) == 13_300_416


def test_class_names_and_face_mask():
    assert len(CLASSES) == 19 and CLASSES[:2] == ("background", "skin") and CLASSES[10] == "nose"
    assert CLASSES[17:] == ("hair", "hat") and set(FACE_CLASSES) <= set(CLASSES)
    labels = np.random.default_rng(2).integers(0, 19, size=(2, 8, 8))
    logits = jax.nn.one_hot(labels, 19) * 5.0 - 1.0
    mask = face_mask(logits)
    assert mask.shape == (2, 8, 8, 1) and mask.dtype == jnp.float32
    expected = np.isin(labels, [CLASSES.index(c) for c in FACE_CLASSES])
    np.testing.assert_array_equal(mask[..., 0], expected)
    np.testing.assert_array_equal(face_mask(logits, ("hair",))[..., 0], labels == 17)
    with pytest.raises(ValueError, match=r"unknown classes \['beard'\]; choose from"):
        face_mask(logits, ("skin", "beard"))
    with pytest.raises(ValueError, match="logits over the 19 CLASSES"):
        face_mask(logits[..., :18])


def test_mismatched_checkpoints_are_refused(face_parsing, tmp_path):
    model, path = face_parsing
    with pytest.raises(
        ValueError, match=r"conv_out.conv_out.weight has shape \(19, 256, 1, 1\), the architecture needs \(11,"
    ):
        convert_bisenet(path, n_classes=11)
    weights = model.state_dict()
    del weights["cp.resnet.layer3.1.bn2.running_mean"]
    weights["sp.conv1.conv.weight"] = torch.zeros(64, 3, 7, 7)  # the spatial path this variant deletes
    torch.save(weights, tmp_path / "bad.pth")
    with pytest.raises(
        ValueError, match="missing keys: cp.resnet.layer3.1.bn2.running_mean; unexpected keys: sp.conv1"
    ):
        convert_bisenet(tmp_path / "bad.pth")
