"""A synthetic PCA face model for tests that must not need an asset: shape, landmarks, UVs and,
optionally, an albedo model (BFM-like: a mean and a unit-variance basis)."""

import numpy as np

from faceflax.geometry.morphable import MorphableModel, cylindrical_uvs

SKIN = np.array([0.74, 0.55, 0.45])  # mean albedo colour (RGB, in [0, 1])
ALBEDO_SPREAD = 0.05  # std of the albedo variation per channel at N(0, 1) coefficients


def _albedo(rng, mean, mouth, rank):
    """Mean albedo ``[V, 3]`` and basis ``[rank, V, 3]`` on the shape ``mean``.

    The mean is skin-coloured, a little lighter toward the top, with redder lips (a Gaussian bump
    at ``mouth``). Each basis vector is a smooth random field: three plane waves
    ``a sin(w . x + phase)`` with random RGB amplitudes ``a`` and wave vectors ``w`` of 3 to 8
    radians per unit (one to two periods across the face), scaled so that N(0, 1) coefficients
    vary the albedo by ``ALBEDO_SPREAD`` (std) per channel: the albedo stays in about [0.3, 0.9].
    """
    lips = np.exp(-0.5 * np.sum((mean - mouth) ** 2, -1) / 0.08**2)
    albedo_mean = SKIN * (1.0 + 0.08 * mean[:, 1:2]) + lips[:, None] * np.array([0.12, -0.08, -0.04])
    waves = 3
    directions = rng.normal(size=(rank, waves, 3))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    vectors = directions * rng.uniform(3.0, 8.0, size=(rank, waves, 1))
    phases = rng.uniform(0.0, 2 * np.pi, size=(rank, waves))
    amplitudes = rng.normal(size=(rank, waves, 3))
    fields = np.sin(np.einsum("kjc,vc->kjv", vectors, mean) + phases[..., None])  # [rank, waves, V]
    basis = np.einsum("kjv,kjc->kvc", fields, amplitudes)
    basis *= ALBEDO_SPREAD / np.sqrt(rank * np.mean(basis**2))
    return albedo_mean, basis


def synthetic_face(seed=0, num_id=8, num_exp=4, albedo_rank=0):
    """A PCA face model built here: an ellipsoid cap (0.75 x 1 x 0.6) with a nose, 68 landmarks
    placed on it in iBUG order, smooth random identity fields (quadratic and cubic in the
    coordinates, so none mimics a rigid motion) and Gaussian expression bumps at the mouth.

    UVs are :func:`~faceflax.geometry.morphable.cylindrical_uvs` of the mean shape (per vertex,
    ``uv_faces = faces``). With ``albedo_rank > 0`` the model has an albedo mean and basis (see
    :func:`_albedo`); with 0, none (``albedo_mean = albedo_basis = None``, as ICT). The identity
    and expression parts do not depend on ``albedo_rank``.
    """
    rng = np.random.default_rng(seed)
    theta, phi = np.meshgrid(
        np.radians(np.linspace(-105, 105, 85)), np.radians(np.linspace(-80, 70, 61)), indexing="ij"
    )
    x, y = 0.75 * np.cos(phi) * np.sin(theta), np.sin(phi)
    z = 0.6 * np.cos(phi) * np.cos(theta)
    z = z + (z > 0) * 0.28 * np.exp(-0.5 * ((x / 0.09) ** 2 + ((y + 0.02) / 0.16) ** 2))
    mean = np.stack([x, y, z], -1).reshape(-1, 3)
    grid = np.arange(theta.size).reshape(theta.shape)
    q0, q1, q2, q3 = grid[:-1, :-1], grid[1:, :-1], grid[1:, 1:], grid[:-1, 1:]
    faces = np.concatenate([np.stack([q0, q1, q2], -1), np.stack([q0, q2, q3], -1)]).reshape(-1, 3)
    v0, v1, v2 = (mean[faces[:, k]] for k in range(3))
    if np.sum(np.cross(v1 - v0, v2 - v0) * (v0 - mean.mean(0))) < 0:
        faces = faces[:, ::-1]

    def ring(centre, half, count):  # from the image-left point, clockwise seen from the front
        a = np.pi - 2 * np.pi * np.arange(count) / count
        return np.stack([centre[0] + half[0] * np.cos(a), centre[1] + half[1] * np.sin(a)], -1)

    t = np.linspace(0, 1, 17)
    targets = np.concatenate(  # (theta, phi) degrees
        [
            np.stack([-90 + 180 * t, 15 - 85 * np.sin(np.pi * t)], -1),  # jaw 0-16
            np.stack([np.linspace(-55, -12, 5), [30, 36, 38, 37, 34]], -1),  # brows 17-26
            np.stack([np.linspace(12, 55, 5), [34, 37, 38, 36, 30]], -1),
            [[0, 24], [0, 17], [0, 10], [0, 2], [-14, -8], [-7, -10], [0, -11], [7, -10], [14, -8]],  # nose
            ring((-28, 21), (10, 3.5), 6),  # eyes 36-47
            ring((28, 21), (10, 3.5), 6),
            ring((0, -30), (22, 8), 12),  # mouth 48-67
            ring((0, -30), (14, 3), 8),
        ]
    )
    params = np.stack([theta.reshape(-1), phi.reshape(-1)], -1)
    landmarks = np.argmin(((params[None] - np.radians(targets)[:, None]) ** 2).sum(-1), axis=1)
    mean = mean - mean.mean(0)
    x, y, z = mean.T
    features = np.stack([x * x, y * y, z * z, x * y, y * z, x * z, y**3, x * x * y], -1)
    id_basis = np.einsum("vf,kfc->kvc", features, rng.normal(size=(num_id, features.shape[1], 3)) * 0.025)
    mouth = 0.5 * (mean[landmarks[51]] + mean[landmarks[57]])
    bump = np.exp(-0.5 * np.sum((mean - mouth) ** 2, -1) / 0.25**2)
    exp_basis = bump[None, :, None] * rng.normal(size=(num_exp, 1, 3)) * 0.06
    albedo_mean, albedo_basis = _albedo(rng, mean, mouth, albedo_rank) if albedo_rank > 0 else (None, None)

    def f32(a):
        return None if a is None else np.asarray(a, np.float32)

    return MorphableModel(
        mean=f32(mean),
        id_basis=f32(id_basis),
        exp_basis=f32(exp_basis),
        albedo_mean=f32(albedo_mean),
        albedo_basis=f32(albedo_basis),
        faces=faces.astype(np.int32),
        uvs=cylindrical_uvs(mean),
        uv_faces=faces.astype(np.int32),
        landmarks=landmarks.astype(np.int32),
        regions={"face": np.ones(len(mean), bool)},
        name="synthetic",
    )
