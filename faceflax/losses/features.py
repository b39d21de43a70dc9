"""Feature-space losses: perceptual (thesis eq. 3.5, MvInvert eq. 8) and identity (eq. 3.11, 4.10, 5.7, MvInvert eq. 9).

Feature networks are passed in as functions, so any converted VGG-Face, FaceNet, ArcFace or
LightCNN (or a stand-in in tests) plugs in unchanged.
"""

import functools
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

Features = Mapping[str, jax.Array] | Sequence[jax.Array]


def _layer_distance(a: jax.Array, b: jax.Array, distance: str) -> jax.Array:
    """Per-sample distance of two ``[B, ...]`` activations, divided by their size ``H * W * C``."""
    diff = (a - b).reshape(a.shape[0], -1)
    if distance == "l1":
        return jnp.sum(jnp.abs(diff), axis=1) / diff.shape[1]
    return jnp.sqrt(jnp.sum(diff**2, axis=1) + 1e-12) / diff.shape[1]


@functools.partial(jax.jit, static_argnames=("features_fn", "distance"))
def perceptual_loss(
    features_fn: Callable[[jax.Array], Features],
    x: jax.Array,
    y: jax.Array,
    layer_weights: Mapping[str, float] | Sequence[float] | None = None,
    distance: str = "l1",
) -> jax.Array:
    """Weighted sum over layers of feature distances, batch mean.

    ``distance="l1"``: ``sum_j w_j |F_j(x) - F_j(y)|_1 / (H_j W_j C_j)``, thesis eq. 3.5 (VGG-Face
    layers 3, 8, 15, 22, 29; the seed's ``|.|`` is read as the element mean, as eq. 3.2 normalises L1).
    ``distance="l2"``: ``sum_j w_j ||F_j(x) - F_j(y)||_2 / (H_j W_j C_j)``, MvInvert eq. 8 (FaceNet).

    Args:
      features_fn: ``images [B, H, W, C] -> {layer: [B, ...]}`` or a sequence of ``[B, ...]``.
      x, y: image batches of one shape (typically prediction and target).
      layer_weights: weight per layer, keyed like the features (a mapping selects those layers, a
        sequence has one weight per returned layer); ``None``: every returned layer, weight 1.
      distance: ``"l1"`` (eq. 3.5) or ``"l2"`` (MvInvert eq. 8).

    Returns:
      Scalar float32.
    """
    if distance not in ("l1", "l2"):
        raise ValueError(
            f"perceptual_loss: distance must be 'l1' (thesis eq. 3.5) or 'l2' (MvInvert eq. 8), got {distance!r}."
        )
    if x.shape != y.shape:
        raise ValueError(f"perceptual_loss needs x and y of one shape, got {x.shape} and {y.shape}.")
    feats_x, feats_y = features_fn(x), features_fn(y)
    if isinstance(feats_x, Mapping):
        if layer_weights is not None and not isinstance(layer_weights, Mapping):
            raise ValueError(
                "perceptual_loss: features_fn returns named layers; pass layer_weights as {layer: weight}."
            )
        weights = dict.fromkeys(feats_x, 1.0) if layer_weights is None else dict(layer_weights)
        missing = sorted(set(weights) - set(feats_x))
        if missing:
            raise ValueError(
                f"perceptual_loss: layers {missing} not in the features {sorted(feats_x)}; fix layer_weights."
            )
        pairs = [(weights[k], feats_x[k], feats_y[k]) for k in weights]
    else:
        weights = [1.0] * len(feats_x) if layer_weights is None else list(layer_weights)
        if isinstance(layer_weights, Mapping) or len(weights) != len(feats_x):
            raise ValueError(
                f"perceptual_loss: features_fn returned {len(feats_x)} layers as a sequence; "
                "pass a sequence of as many layer_weights."
            )
        pairs = list(zip(weights, feats_x, feats_y))
    return sum(w * jnp.mean(_layer_distance(a, b, distance)) for w, a, b in pairs)


@jax.jit
def identity_cosine_loss(embeddings: jax.Array, reference: jax.Array) -> jax.Array:
    """Cosine distance ``1 - <a, b> / (||a|| ||b||)``, averaged; thesis eq. 5.7, MvInvert eq. 9.

    Shapes broadcast: for MvInvert eq. 9 pass the input's ``[B, 1, D]`` embedding and the ``K``
    renders' ``[B, K, D]``, and the mean runs over ``B`` and ``K``. (Eq. 5.7's denominator names
    ``F(I)`` where its numerator has ``F(I_f)``; this is the cosine of the two vectors compared.)

    Args:
      embeddings, reference: ``[..., D]`` identity embeddings (ArcFace, FaceNet), broadcastable.

    Returns:
      Scalar float32 in ``[0, 2]``.
    """
    if embeddings.shape[-1] != reference.shape[-1]:
        raise ValueError(
            f"identity_cosine_loss: embedding sizes differ, {embeddings.shape} vs {reference.shape}; "
            "both must come from the same face recognition network."
        )
    dot = jnp.sum(embeddings * reference, axis=-1)
    norms = jnp.linalg.norm(embeddings, axis=-1) * jnp.linalg.norm(reference, axis=-1)
    return jnp.mean(1.0 - dot / jnp.maximum(norms, 1e-12))


@functools.partial(jax.jit, static_argnames="reduction")
def identity_l1_loss(features: jax.Array, reference: jax.Array, reduction: str = "mean") -> jax.Array:
    """L1 distance of identity features, batch mean.

    ``reduction="mean"``: ``1/N sum_i |F(x)_i - F(y)_i|``, thesis eq. 3.11 (LightCNN);
    ``reduction="sum"``: ``||F(x) - F(y)||_1``, thesis eq. 4.10 (FaceNet).

    Args:
      features, reference: ``[B, N]`` identity features.
      reduction: ``"mean"`` (eq. 3.11) or ``"sum"`` (eq. 4.10) over the ``N`` features.

    Returns:
      Scalar float32.
    """
    if features.ndim != 2 or features.shape != reference.shape:
        raise ValueError(
            f"identity_l1_loss needs two [B, N] feature batches of one shape, got {features.shape} and "
            f"{reference.shape}; flatten them with f.reshape(len(f), -1)."
        )
    if reduction not in ("mean", "sum"):
        raise ValueError(
            f"identity_l1_loss: reduction must be 'mean' (eq. 3.11) or 'sum' (eq. 4.10), got {reduction!r}."
        )
    per_sample = jnp.sum(jnp.abs(features - reference), axis=1)
    if reduction == "mean":
        per_sample = per_sample / features.shape[1]
    return jnp.mean(per_sample)
