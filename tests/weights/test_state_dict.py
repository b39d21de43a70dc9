"""Reading checkpoints and refusing ones that do not match an architecture."""

import numpy as np
import pytest

from faceflax.weights.state_dict import StateDict, load_state_dict


def test_npz_and_torch_checkpoints_read_alike(tmp_path):
    torch = pytest.importorskip("torch")
    weights = {"conv.weight": np.arange(6, dtype=np.float32).reshape(1, 2, 3), "bn.num_batches_tracked": np.array(3)}
    np.savez(tmp_path / "w.npz", **weights)
    torch.save({"g_ema": {f"module.{k}": torch.from_numpy(v) for k, v in weights.items()}}, tmp_path / "w.pt")
    from_npz, from_torch = load_state_dict(tmp_path / "w.npz"), load_state_dict(tmp_path / "w.pt", prefix="g_ema")
    assert sorted(from_npz) == sorted(from_torch) == sorted(weights)
    np.testing.assert_array_equal(from_torch["conv.weight"], weights["conv.weight"])
    with pytest.raises(ValueError, match="no entry 'ema'"):
        load_state_dict(tmp_path / "w.pt", prefix="ema")


def test_training_checkpoints_with_their_options_load(tmp_path):
    import argparse

    torch = pytest.importorskip("torch")
    torch.save({"g_ema": {"w": torch.ones(2)}, "args": argparse.Namespace(size=256)}, tmp_path / "ckpt.pt")
    np.testing.assert_array_equal(load_state_dict(tmp_path / "ckpt.pt", prefix="g_ema")["w"], np.ones(2))


def test_bad_paths_and_files(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint"):
        load_state_dict(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_state_dict(tmp_path / "junk.pt")


def test_missing_unexpected_and_misshapen_keys_are_refused():
    state = StateDict({"a": np.zeros((2, 3)), "b": np.zeros(4), "extra": np.zeros(1)}, "test net")
    assert state.take("a", (2, 3)).dtype == np.float32
    with pytest.raises(ValueError, match=r"b has shape \(4,\), the architecture needs \(5,\)"):
        state.take("b", (5,))
    state.take("c", (7,))
    with pytest.raises(ValueError, match="missing keys: c; unexpected keys: extra"):
        state.finish()
    ok = StateDict({"a": np.zeros(1), "n": np.array(1)})
    ok.take("a")
    ok.skip("n")
    ok.finish()
