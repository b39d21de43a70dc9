"""torchvision ResNet checkpoints -> Flax, compared with the torch network on random weights and statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.nn.resnet import ResNet
from faceflax.nn.unet import UNet
from faceflax.weights.resnet import graft, load_resnet, resnet_variables
from faceflax.weights.state_dict import StateDict

torch = pytest.importorskip("torch")
from tests.weights import torch_resnet  # needs torch: imported once it is known present


def relative_error(expected, actual):
    expected = np.asarray(expected)
    return np.abs(expected - np.asarray(actual)).max() / np.abs(expected).max()


@pytest.mark.parametrize(("depth", "size"), [(18, 112), (50, 72)])
def test_logits_and_stage_features_match_torch(tmp_path, depth, size):
    model = torch_resnet.resnet(depth)
    torch.save(model.state_dict(), tmp_path / "resnet.pth")
    x = np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        logits, features = model(torch.from_numpy(x))
    variables = load_resnet(tmp_path / "resnet.pth", depth)
    apply = jax.jit(ResNet(depth, return_features=True).apply)
    ours, our_features = apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
    assert relative_error(logits, ours) < 1e-4
    for theirs, mine in zip(features, our_features, strict=True):
        assert relative_error(theirs.permute(0, 2, 3, 1), mine) < 1e-4


def test_mismatched_checkpoints_are_refused(tmp_path):
    weights = torch_resnet.resnet(18).state_dict()
    torch.save(weights, tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="holds a ResNet-18: pass depth=18, not 50"):
        load_resnet(tmp_path / "r18.pth", 50)
    with pytest.raises(ValueError, match=r"fc.bias has shape \(1000,\), the architecture needs \(239,\)"):
        load_resnet(tmp_path / "r18.pth", 18, num_classes=239)
    del weights["layer2.0.downsample.1.running_var"]
    weights["fc2.weight"] = torch.zeros(1)
    torch.save(weights, tmp_path / "bad.pth")
    with pytest.raises(
        ValueError, match="missing keys: layer2.0.downsample.1.running_var; unexpected keys: fc2.weight$"
    ):
        load_resnet(tmp_path / "bad.pth", 18)


def test_backbone_of_a_larger_checkpoint_and_graft_into_unet():
    tensors = {f"backbone.{k}": v.numpy() for k, v in torch_resnet.resnet(18).state_dict().items()}
    tensors["final_layers.0.weight"] = np.zeros((239, 512, 1, 1), np.float32)
    state = StateDict(tensors, "N_R checkpoint")
    encoder = resnet_variables(state, 18, num_classes=None, prefix="backbone.")
    state.take("final_layers.0.weight", (239, 512, 1, 1))
    state.finish()
    np.testing.assert_array_equal(
        encoder["params"]["conv1"]["kernel"], tensors["backbone.conv1.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        encoder["batch_stats"]["layer4_1"]["bn2"]["var"], tensors["backbone.layer4.1.bn2.running_var"]
    )
    unet = jax.eval_shape(UNet().init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    grafted = graft(unet, "encoder", encoder)
    assert grafted["params"]["encoder"] is encoder["params"] and grafted["params"]["head"] is unet["params"]["head"]
    with pytest.raises(ValueError, match="no 'params/backbone'; graft into the module that has submodule 'backbone'"):
        graft(unet, "backbone", encoder)
    resnet50 = jax.eval_shape(ResNet(50, None).init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="'batch_stats/encoder' does not fit .*layer1_0/bn3/mean"):
        graft(unet, "encoder", resnet50)
