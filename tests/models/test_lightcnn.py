"""LightCNN-29 v2: the released checkpoint's format (``state_dict`` entry, ``module.`` names) converts, and the
256-d feature of thesis eq. 3.11 and the logits equal AlfredXiangWu/LightCNN's module on random weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.models.lightcnn import LUMA, LightCNN29v2
from faceflax.weights.lightcnn import convert_lightcnn

CLASSES = 100  # a small classifier for the output test; the published 80,013 is checked by count


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def close(ours, theirs):
    theirs = np.asarray(theirs)
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


def save_checkpoint(state_dict, path):
    """The released ``.pth.tar`` layout: train.py's ``save_checkpoint`` of a ``DataParallel`` model."""
    import torch

    tensors = {f"module.{name}": value for name, value in state_dict.items()}
    torch.save({"epoch": 80, "arch": "LightCNN-29v2", "state_dict": tensors, "prec1": 99.4}, path)


@pytest.fixture(scope="module")
def torch_lightcnn(tmp_path_factory):
    """(random-weight ``LightCNN_29Layers_v2(num_classes=100)``, path of its checkpoint)."""
    torch = pytest.importorskip("torch")
    from tests.models.torch_face_nets import LightCNN_29Layers_v2

    torch.manual_seed(0)
    module = LightCNN_29Layers_v2(num_classes=CLASSES).eval()
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.Conv2d | torch.nn.Linear):
                layer.weight.normal_(0, layer.weight[0].numel() ** -0.5)
                if layer.bias is not None:
                    layer.bias.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("lightcnn") / "LightCNN_29Layers_V2_checkpoint.pth.tar"
    save_checkpoint(module.state_dict(), path)
    return module, path


def test_parameter_count_equals_the_torch_module():
    torch = pytest.importorskip("torch")
    from tests.models.torch_face_nets import LightCNN_29Layers_v2

    with torch.device("meta"):
        theirs = sum(p.numel() for p in LightCNN_29Layers_v2(num_classes=80013).parameters())
    faces = jnp.zeros((1, 128, 128, 1))
    shapes = jax.eval_shape(lambda: LightCNN29v2().init(jax.random.key(0), faces, method="logits"))
    assert count(shapes["params"]) == theirs == 30_959_200
    backbone = jax.eval_shape(lambda: LightCNN29v2(num_classes=None).init(jax.random.key(0), faces))
    assert count(backbone["params"]) == theirs - 256 * 80013


def test_features_and_logits_match_pytorch(torch_lightcnn):
    import torch

    module, path = torch_lightcnn
    variables = convert_lightcnn(path, num_classes=CLASSES)
    rgb = np.random.default_rng(0).uniform(size=(2, 128, 128, 3)).astype(np.float32)
    gray = rgb @ np.asarray(LUMA, np.float32)[:, None]
    model = LightCNN29v2(CLASSES)
    logits, features = jax.jit(lambda v, x: model.apply(v, x, method="logits"))(variables, gray)
    with torch.no_grad():
        their_logits, their_features = module(torch.from_numpy(gray.transpose(0, 3, 1, 2).copy()))
    assert features.shape == (2, 256) and logits.shape == (2, CLASSES)
    close(features, their_features.numpy())
    close(logits, their_logits.numpy())
    close(jax.jit(model.apply)(variables, rgb), their_features.numpy())  # RGB is converted with BT.601 luma


def test_classifier_is_dropped_or_its_size_checked(torch_lightcnn):
    _, path = torch_lightcnn
    backbone = convert_lightcnn(path, num_classes=None)
    assert "fc2" not in backbone["params"]
    with pytest.raises(ValueError, match=r"fc2.weight has shape \(100, 256\), the architecture needs \(80013, 256\)"):
        convert_lightcnn(path)
    with pytest.raises(ValueError, match="has no classifier fc2"):
        LightCNN29v2(num_classes=None).apply(backbone, jnp.zeros((1, 128, 128, 1)), method="logits")


def test_mismatched_checkpoints_are_refused(torch_lightcnn, tmp_path):
    import torch

    module, _ = torch_lightcnn
    state = module.state_dict()
    state["fc3.weight"] = state.pop("fc.bias")
    save_checkpoint(state, tmp_path / "bad.pth.tar")
    with pytest.raises(ValueError, match="missing keys: fc.bias; unexpected keys: fc3.weight"):
        convert_lightcnn(tmp_path / "bad.pth.tar", num_classes=CLASSES)
    torch.save(module.state_dict(), tmp_path / "bare.pth")
    with pytest.raises(ValueError, match="no entry 'state_dict'"):
        convert_lightcnn(tmp_path / "bare.pth", num_classes=CLASSES)
    assert count(convert_lightcnn(tmp_path / "bare.pth", num_classes=CLASSES, prefix="")) == count(
        dict(module.named_parameters())
    )


def test_input_size_names_the_fix():
    with pytest.raises(ValueError, match="resize them to 128x128"):
        LightCNN29v2().init(jax.random.key(0), jnp.zeros((1, 112, 112, 1)))
