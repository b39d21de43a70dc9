"""VGG-Face: Albanie's ``vgg_face_dag.pth`` layout converts, and the features of thesis eq. 3.5 and the logits
equal the PyTorch module's on random weights; parameter count as published; mismatched checkpoints refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.models.vgg_face import LAYER_NAMES, PERCEPTUAL_LAYERS, VGGFace, preprocess
from faceflax.weights.vgg_face import convert_vgg_face

# A small head (fc6/fc7 width 16, 10 classes) keeps the checkpoint at the convolutions' 59 MB; fc6 still maps
# all 512 x 7 x 7 inputs, so its reordering is tested in full.
HEAD = {"num_classes": 10, "fc_features": 16}


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def close(ours, theirs):
    theirs = np.asarray(theirs)
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


@pytest.fixture(scope="module")
def torch_vgg(tmp_path_factory):
    """(random-weight ``Vgg_face_dag`` with the small head, path of its ``torch.save``-d state dict)."""
    torch = pytest.importorskip("torch")
    from tests.models.torch_face_nets import Vgg_face_dag

    torch.manual_seed(0)
    module = Vgg_face_dag(**HEAD).eval()
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.Conv2d | torch.nn.Linear):
                fan_in = layer.weight[0].numel()
                layer.weight.normal_(0, (2 / fan_in) ** 0.5)
                layer.bias.normal_(0, 1.0)
    path = tmp_path_factory.mktemp("vgg_face") / "vgg_face_dag.pth"
    torch.save(module.state_dict(), path)
    return module, path


def to_torch(images):
    import torch

    return torch.from_numpy(np.asarray(preprocess(jnp.asarray(images))).transpose(0, 3, 1, 2).copy())


def test_parameter_count_is_the_published_one():
    torch = pytest.importorskip("torch")
    from tests.models.torch_face_nets import Vgg_face_dag

    with torch.device("meta"):
        theirs = sum(p.numel() for p in Vgg_face_dag().parameters())
    shapes = jax.eval_shape(VGGFace().init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    assert count(shapes["params"]) == theirs == 145_002_878
    assert [LAYER_NAMES[i] for i in PERCEPTUAL_LAYERS] == ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"]


def test_features_match_pytorch(torch_vgg):
    import torch

    module, path = torch_vgg
    variables = convert_vgg_face(path, **HEAD)
    images = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype(np.float32)
    layers = (0, 1, 4, *PERCEPTUAL_LAYERS, 30)  # a conv, a ReLU and a pool output besides eq. 3.5's layers
    ours = jax.jit(lambda v, x: VGGFace(**HEAD).apply(v, x, layers, method="features"))(variables, images)
    with torch.no_grad():
        theirs = module.features(to_torch(images), layers)
    assert sorted(ours) == sorted(layers)
    for index in layers:
        expected = theirs[index].numpy().transpose(0, 2, 3, 1)
        assert ours[index].shape == expected.shape, LAYER_NAMES[index]
        close(ours[index], expected)
    assert ours[29].shape == (2, 4, 4, 512) and ours[30].shape == (2, 2, 2, 512)
    features_only = convert_vgg_face(path, **HEAD, include_top=False)
    assert sorted(features_only["params"]) == sorted(n for n in LAYER_NAMES if n.startswith("conv"))
    relu5_3 = VGGFace(**HEAD).apply(features_only, images, (29,), method="features")[29]
    np.testing.assert_allclose(relu5_3, ours[29], rtol=1e-5, atol=1e-5 * float(np.abs(ours[29]).max()))


def test_logits_match_pytorch_at_224(torch_vgg):
    import torch

    module, path = torch_vgg
    variables = convert_vgg_face(path, **HEAD)
    images = np.random.default_rng(1).uniform(size=(1, 224, 224, 3)).astype(np.float32)
    ours = jax.jit(VGGFace(**HEAD).apply)(variables, images)
    with torch.no_grad():
        theirs = module(to_torch(images)).numpy()
    assert ours.shape == (1, 10)
    close(ours, theirs)


def test_mismatched_checkpoints_are_refused(torch_vgg, tmp_path):
    import torch

    module, _ = torch_vgg
    state = module.state_dict()
    state["conv6_1.weight"] = state.pop("conv5_3.bias")
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="missing keys: conv5_3.bias; unexpected keys: conv6_1.weight"):
        convert_vgg_face(tmp_path / "bad.pth", **HEAD)
    with pytest.raises(ValueError, match=r"fc8.bias has shape \(10,\), the architecture needs \(2622,\)"):
        convert_vgg_face(torch_vgg[1], fc_features=16)


def test_bad_layers_and_sizes_name_the_fix():
    model, key = VGGFace(), jax.random.key(0)
    with pytest.raises(ValueError, match=r"indices run 0\.\.30"):
        model.init(key, jnp.zeros((1, 32, 32, 3)), (31,), method="features")
    with pytest.raises(ValueError, match=r"indices run 0\.\.30"):
        model.init(key, jnp.zeros((1, 32, 32, 3)), (), method="features")
    with pytest.raises(ValueError, match="RGB images"):
        model.init(key, jnp.zeros((1, 32, 32, 1)), method="features")
    with pytest.raises(ValueError, match="needs 224x224 faces"):
        model.init(key, jnp.zeros((1, 112, 112, 3)))
