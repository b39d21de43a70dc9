"""Dice and BCE+OHEM (thesis eq. 3.3, 4.4, 5.3, 5.4) and the OHEM selection itself."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceflax.losses.ohem import hardest_mean
from faceflax.losses.segmentation import binary_cross_entropy, dice_loss


def test_dice_on_a_hand_computed_binary_mask():
    probs = jnp.asarray([1.0, 0.5, 0.0, 0.0]).reshape(1, 2, 2, 1)
    target = jnp.asarray([1.0, 1.0, 0.0, 0.0]).reshape(1, 2, 2, 1)
    # intersection 1.5, sums 1.5 + 2: loss 1 - 3 / 3.5 = 1/7  (eq. 5.3)
    assert float(dice_loss(probs, target)) == pytest.approx(1 / 7, abs=1e-6)
    assert float(dice_loss(target, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(dice_loss(target, 1 - target)) == pytest.approx(1.0, abs=1e-6)


def test_dice_sums_over_classes_and_averages_over_the_batch():
    target = jax.nn.one_hot(jnp.asarray([[0, 0], [1, 2]]), 3)[None]  # [1, 2, 2, 3]
    probs = target.at[0, 1, 1].set(jnp.asarray([0.0, 1.0, 0.0]))  # pixel of class 2 predicted as 1
    # class 0: 0; class 1: 1 - 2/3; class 2: 1 - (0 + eps)/(1 + eps)  (eq. 3.3)
    assert float(dice_loss(probs, target)) == pytest.approx(1 / 3 + 1.0, abs=2e-6)
    batch = jnp.concatenate([probs, target])
    assert float(dice_loss(batch, jnp.concatenate([target, target]))) == pytest.approx(2 / 3, abs=1e-6)
    grad = jax.grad(dice_loss)(jnp.full_like(target, 0.5), target)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_bce_matches_its_formula_and_is_stable():
    logits = jnp.asarray([2.0, -1.0, 0.0, 30.0]).reshape(1, 2, 2, 1)
    target = jnp.asarray([1.0, 0.0, 0.3, 0.0]).reshape(1, 2, 2, 1)
    z, t = np.asarray(logits, np.float64), np.asarray(target, np.float64)
    log_m, log_1m = -np.log1p(np.exp(-z)), -np.log1p(np.exp(z))  # log m, log(1 - m) with m = sigmoid(z)
    expected = -(t * log_m + (1 - t) * log_1m)  # eq. 5.4; about 30 for the last pixel
    assert float(binary_cross_entropy(logits, target)) == pytest.approx(expected.mean(), rel=1e-5)
    mask = jnp.asarray([1.0, 1.0, 0.0, 0.0]).reshape(1, 2, 2, 1)
    assert float(binary_cross_entropy(logits, target, mask)) == pytest.approx(expected.ravel()[:2].mean(), rel=1e-5)
    assert np.all(np.isfinite(jax.grad(binary_cross_entropy)(100 * logits, target)))


def test_ohem_keeps_exactly_the_hardest_fraction():
    losses = jnp.asarray(np.random.default_rng(0).permutation(64), jnp.float32).reshape(1, 8, 8, 1)
    kept = hardest_mean(losses, keep_ratio=0.25)  # k = 16 of 64: 48 .. 63
    assert float(kept) == pytest.approx(np.arange(48, 64).mean())
    grad = jax.grad(hardest_mean)(losses, 0.25)
    assert int(np.count_nonzero(grad)) == 16
    np.testing.assert_allclose(np.asarray(grad)[np.asarray(losses) >= 48], 1 / 16)
    ties = jax.grad(hardest_mean)(jnp.ones((2, 4, 5, 1)), 0.3)  # k = round(6.0) per image, even on ties
    assert [int(np.count_nonzero(g)) for g in ties] == [6, 6]


def test_ohem_ranks_only_masked_pixels():
    losses = jnp.arange(64.0).reshape(1, 8, 8, 1)
    mask = jnp.zeros_like(losses).at[:, :5].set(1.0)  # 40 valid pixels, losses 0 .. 39
    grad = jax.grad(hardest_mean)(losses, 0.25, mask)  # k = 10: losses 30 .. 39, none outside the mask
    assert float(hardest_mean(losses, 0.25, mask)) == pytest.approx(np.arange(30, 40).mean())
    assert int(np.count_nonzero(grad)) == 10 and float(jnp.sum(grad * (1 - mask))) == 0.0
    assert float(hardest_mean(losses, 0.5, jnp.zeros_like(losses))) == 0.0
    assert float(hardest_mean(losses, 1e-3)) == 63.0  # at least one element per image


def test_bce_with_ohem_keeps_per_image_top_k():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(0, 3, (2, 6, 6, 1)), jnp.float32)
    target = jnp.asarray(rng.uniform(size=(2, 6, 6, 1)) > 0.5, jnp.float32)
    per_pixel = np.asarray(jax.nn.softplus(logits) - target * logits).reshape(2, -1)
    top = np.sort(per_pixel, axis=1)[:, -9:]  # round(0.25 * 36) = 9 per image
    assert float(binary_cross_entropy(logits, target, keep_ratio=0.25)) == pytest.approx(top.mean(), rel=1e-5)
    grad = jax.grad(binary_cross_entropy)(logits, target, None, 0.25)
    assert [int(np.count_nonzero(g)) for g in grad] == [9, 9]


def test_bad_arguments_raise_value_error():
    x = jnp.zeros((1, 4, 4, 1))
    with pytest.raises(ValueError, match="keep_ratio"):
        binary_cross_entropy(x, x, keep_ratio=0.0)
    with pytest.raises(ValueError, match="keep_ratio"):
        hardest_mean(x, 1.5)
    with pytest.raises(ValueError, match="same shape"):
        dice_loss(x, jnp.zeros((1, 4, 4, 2)))
    with pytest.raises(ValueError, match="mask"):
        binary_cross_entropy(x, x, jnp.ones((1, 4, 4)))
