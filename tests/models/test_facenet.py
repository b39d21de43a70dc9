"""FaceNet (facenet-pytorch's InceptionResnetV1): a checkpoint in the public layout converts, and embeddings,
feature maps and parameter counts equal the torch network's on random weights and BN statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.models.facenet import FEATURE_NAMES, IMAGE_SIZE, InceptionResnetV1, fixed_image_standardization
from faceflax.weights.facenet import convert_facenet

torch = pytest.importorskip("torch")
# needs torch, so imported only once it is known present
from tests.models import torch_parsing_nets as nets
from tests.models.torch_random import randomize

VGGFACE2_CLASSES = 8631


def relative_error(expected, actual) -> float:
    expected = np.asarray(expected)
    return float(np.abs(expected - np.asarray(actual)).max() / np.abs(expected).max())


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def vggface2_layout(tmp_path_factory):
    """A random torch network with VGGFace2's 8631-way ``logits``, saved as ``20180402-114759-vggface2.pt`` is."""
    model = randomize(nets.InceptionResnetV1(num_classes=VGGFACE2_CLASSES))
    path = tmp_path_factory.mktemp("facenet") / "20180402-114759-vggface2.pt"
    torch.save(model.state_dict(), path)
    return model, path


def test_embeddings_and_feature_maps_match_torch(vggface2_layout):
    model, path = vggface2_layout
    faces = np.random.default_rng(0).uniform(size=(2, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    theirs = {}
    hooks = [
        getattr(model, name).register_forward_hook(lambda _m, _i, out, name=name: theirs.__setitem__(name, out))
        for name in FEATURE_NAMES
    ]
    with torch.no_grad():
        embedding = model(torch.from_numpy(np.asarray(fixed_image_standardization(faces)).transpose(0, 3, 1, 2)))
    for hook in hooks:
        hook.remove()
    variables = convert_facenet(path)  # the classifier is dropped for embeddings
    ours, features = jax.jit(InceptionResnetV1(return_features=True).apply)(variables, faces)
    assert ours.shape == (2, 512) and relative_error(embedding, ours) < 1e-4
    np.testing.assert_allclose(np.linalg.norm(ours, axis=-1), 1.0, rtol=1e-5)
    assert sorted(features) == sorted(FEATURE_NAMES)  # jit returns dicts sorted by key
    for name in FEATURE_NAMES:
        expected = theirs[name].permute(0, 2, 3, 1)
        assert features[name].shape == tuple(expected.shape), name
        assert relative_error(expected, features[name]) < 1e-4, name
    assert features["repeat_1"].shape[1:] == (17, 17, 256) and features["block8"].shape[1:] == (3, 3, 1792)


def test_parameter_counts_and_the_classifier(vggface2_layout):
    model, path = vggface2_layout
    images = jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3))
    embedder = jax.eval_shape(InceptionResnetV1().init, jax.random.key(0), images)
    classifier = jax.eval_shape(InceptionResnetV1(VGGFACE2_CLASSES).init, jax.random.key(0), images)
    torch_count = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("logits"))
    assert count(embedder["params"]) == torch_count == 23_482_624
    assert count(classifier["params"]) == sum(p.numel() for p in model.parameters())
    variables = convert_facenet(path, num_classes=VGGFACE2_CLASSES)
    np.testing.assert_array_equal(variables["params"]["logits"]["kernel"], model.logits.weight.detach().numpy().T)
    np.testing.assert_array_equal(variables["params"]["logits"]["bias"], model.logits.bias.detach().numpy())
    with pytest.raises(ValueError, match=r"logits.bias has shape \(8631,\), the architecture needs \(10575,\)"):
        convert_facenet(path, num_classes=10575)


def test_mismatched_checkpoints_are_refused(tmp_path):
    weights = nets.InceptionResnetV1().state_dict()
    del weights["repeat_2.3.branch1.2.bn.running_var"]
    weights["repeat_4.0.conv2d.weight"] = torch.zeros(1)
    torch.save(weights, tmp_path / "bad.pt")
    with pytest.raises(
        ValueError, match="missing keys: repeat_2.3.branch1.2.bn.running_var; unexpected keys: repeat_4.0"
    ):
        convert_facenet(tmp_path / "bad.pt")


def test_too_small_faces_are_refused():
    with pytest.raises(ValueError, match="at least 75 px.*resize the aligned crops to 160x160"):
        jax.eval_shape(InceptionResnetV1().init, jax.random.key(0), jnp.zeros((1, 74, 160, 3)))
