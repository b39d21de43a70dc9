import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from faceflax.train.logging import read_metrics
from faceflax.train.loop import train
from faceflax.train.sharding import make_mesh, tree_shardings


def _trajectory(workdir):
    return {k: [r[k] for r in read_metrics(workdir)] for k in read_metrics(workdir)[0]}


@pytest.mark.parametrize("variant", ["sngan", "wgan_gp,arch=resnet"])
def test_eight_devices_match_one_device(tmp_path, make_config, variant):
    config = make_config(f"lfw.py:{variant},runlocal", "total_steps=3")
    one = train(config, tmp_path / "one", devices=jax.devices()[:1], progress=False)
    eight = train(config, tmp_path / "eight", progress=False)
    assert len(eight.params["discriminator"]["Conv_0" if "sngan" in variant else "DiscriminatorResBlock_0"])
    one_losses, eight_losses = _trajectory(tmp_path / "one"), _trajectory(tmp_path / "eight")
    for name in one_losses:
        np.testing.assert_allclose(eight_losses[name], one_losses[name], rtol=2e-4, atol=1e-5, err_msg=name)
    # Adam moves a weight by about lr per step whatever its gradient's size, so a weight whose
    # gradient is at rounding level (a dead unit of these tiny nets) may end up to
    # 2 x steps x lr apart in the two runs; the great majority agree tightly.
    bound = 2 * config.total_steps * config.optimizers.discriminator.learning_rate
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=bound),
        jax.device_get(one.params),
        jax.device_get(eight.params),
    )
    close = jax.tree.map(
        lambda a, b: np.isclose(a, b, rtol=1e-3, atol=1e-5).ravel(),
        jax.device_get(one.params),
        jax.device_get(eight.params),
    )
    assert np.concatenate(jax.tree.leaves(close)).mean() > 0.95


def test_fsdp_parameter_rules_shard_and_match_data_parallel(tmp_path, make_config):
    rule = r"((r'Conv_\d+/sn/kernel$', (None, None, None, 'fsdp')),)"
    base = make_config("lfw.py:sngan,runlocal", "total_steps=3")
    fsdp = make_config(
        "lfw.py:sngan,runlocal", "total_steps=3", "mesh=(('data', 4), ('fsdp', 2))", f"sharding_rules={rule}"
    )
    train(base, tmp_path / "data", progress=False)
    state = train(fsdp, tmp_path / "fsdp", progress=False)
    kernel = state.params["discriminator"]["Conv_1"]["sn"]["kernel"]
    assert kernel.sharding.spec == PartitionSpec(None, None, None, "fsdp")
    assert kernel.addressable_shards[0].data.shape[-1] == kernel.shape[-1] // 2
    moment = state.opt_state["discriminator"][0].mu["Conv_1"]["sn"]["kernel"]
    assert moment.sharding.spec == PartitionSpec(None, None, None, "fsdp")
    reference, sharded = _trajectory(tmp_path / "data"), _trajectory(tmp_path / "fsdp")
    for name in reference:
        np.testing.assert_allclose(sharded[name], reference[name], rtol=2e-4, atol=1e-5, err_msg=name)


def test_mesh_and_rule_errors_name_the_problem():
    with pytest.raises(ValueError, match="needs 6 devices, have 8"):
        make_mesh((("data", 3), ("fsdp", 2)))
    with pytest.raises(ValueError, match="at most one axis"):
        make_mesh((("data", -1), ("fsdp", -1)))
    mesh = make_mesh((("data", 4), ("fsdp", 2)))
    tree = {"w": jax.ShapeDtypeStruct((3, 5), np.float32)}
    with pytest.raises(ValueError, match="not divisible by fsdp=2"):
        tree_shardings(tree, mesh, [("w", (None, "fsdp"))])
    assert tree_shardings(tree, mesh, [])["w"].spec == PartitionSpec()
