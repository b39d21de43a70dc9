"""ArcFace's IResNet: arcface_torch checkpoints convert to Flax and give the torch network's embeddings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.models.arcface import IResNet
from faceflax.weights.arcface import convert_iresnet, iresnet_variables
from faceflax.weights.state_dict import StateDict

torch = pytest.importorskip("torch")  # the reference below needs it
from tests.models import torch_identity_nets as reference
from tests.models.torch_random import randomize


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def template(depth: int) -> dict:
    return jax.eval_shape(IResNet(depth).init, jax.random.key(0), jnp.zeros((1, 112, 112, 3)))


@pytest.fixture(scope="module")
def iresnet50(tmp_path_factory):
    """arcface_torch's iresnet50 with random weights and BN statistics, and its ``backbone.pth``."""
    module = randomize(reference.iresnet(50))
    path = tmp_path_factory.mktemp("arcface") / "backbone.pth"
    torch.save(module.state_dict(), path)
    return module, path


def test_iresnet50_embeddings_match_torch(iresnet50):
    module, path = iresnet50
    faces = np.random.default_rng(0).uniform(size=(2, 112, 112, 3)).astype(np.float32)
    with torch.no_grad():
        theirs = module((torch.from_numpy(faces.transpose(0, 3, 1, 2)) - 0.5) / 0.5).numpy()
    variables = convert_iresnet(path, depth=50)
    assert count(variables["params"]) == count(template(50)["params"]) == sum(p.numel() for p in module.parameters())
    assert count(variables["params"]) == 43_590_848
    ours = np.asarray(jax.jit(IResNet(50).apply)(variables, faces))
    assert ours.shape == (2, 512)
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-4


def test_iresnet100_parameter_count_and_key_map():
    with torch.device("meta"):
        module = reference.iresnet(100)
    assert count(template(100)["params"]) == sum(p.numel() for p in module.parameters()) == 65_156_160
    zeros = {name: np.broadcast_to(np.float32(0), t.shape) for name, t in module.state_dict().items()}
    state = StateDict(zeros, "iresnet100")
    variables = iresnet_variables(state, depth=100)
    state.finish()  # every torch tensor taken with the shape the Flax network needs, none missing
    assert jax.tree.map(np.shape, variables) == jax.tree.map(lambda x: x.shape, template(100))


def test_mismatched_checkpoints_are_refused(iresnet50, tmp_path):
    module, path = iresnet50
    with pytest.raises(
        ValueError, match=r"iresnet100 .* missing keys: layer2\.10\.bn1\.running_mean, .*\(375 in all\)"
    ):
        convert_iresnet(path, depth=100)  # 25 more blocks of 15 tensors
    weights = module.state_dict()
    del weights["layer3.2.prelu.weight"]
    weights["layer5.0.conv1.weight"] = torch.zeros(1)
    torch.save(weights, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="missing keys: layer3.2.prelu.weight; unexpected keys: layer5.0.conv1.weight"):
        convert_iresnet(tmp_path / "bad.pth", depth=50)
    with pytest.raises(ValueError, match="resize the faces to 112x112"):
        jax.eval_shape(IResNet(50).init, jax.random.key(0), jnp.zeros((1, 128, 128, 3)))
