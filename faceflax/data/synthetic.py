"""An embedded synthetic face dataset with exact ground truth: faces rendered from the morphable model.

No download: the identities, expressions, poses (yaw up to +-75 degrees) and SH lights are random draws; the
textures are the complete UV textures :mod:`faceflax.reconstruct` makes from the two embedded photos (the
astronaut and Grace Hopper), one per example with a random per-channel gain (skin tone, white balance). So, unlike the seeds' datasets, every
example carries what a texture method should recover: the complete texture, which of its texels the render
shows, and the same face at a second pose (pairs for pose editing, thesis ch. 3).

Example (``SyntheticFaces(...)[i]``, deterministic in ``(seed, i)``), float32 unless said:

* ``image [S, S, 3]``: the face rendered at pose 1 over a random smooth background, lit by
  ``shade``-style SH light (thesis ch. 5: 9 coefficients, monochrome) on the texture;
* ``texture [T, T, 3]``: the unlit ground-truth UV texture; ``visible [T, T]`` bool: its texels seen in
  ``image`` (:func:`faceflax.render.uv.sample_uv_texture`'s visibility);
* ``landmarks [68, 2]`` pixels, ``face_mask [S, S]`` bool (pixels of the model's face);
* ``id_coeffs``, ``exp_coeffs``, ``angles [3]`` (pitch, yaw, roll radians), ``gamma [9]``;
* ``image_2``, ``landmarks_2``, ``angles_2``: the same face and light at a second random pose.

Rendering is one jitted program per (model, sizes), vmapped over the batch of :meth:`SyntheticFaces.batch`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from faceflax.geometry.lighting import INIT_LIT, SH_A, SH_C, sh_basis
from faceflax.geometry.mesh import normalize, vertex_normals
from faceflax.geometry.morphable import MorphableModel, load_model, shape
from faceflax.geometry.rotation import euler_to_matrix
from faceflax.reconstruct import views
from faceflax.render import interpolate, rasterize, texture
from faceflax.render.uv import sample_uv_texture, uv_fragments

MAX_YAW_DEG = 75.0
MAX_PITCH_DEG = 15.0
MAX_ROLL_DEG = 10.0


def source_textures(model: MorphableModel, uv_size: int) -> np.ndarray:
    """``[2, T, T, 3]``: the complete textures ``faceflax reconstruct`` makes from the embedded photos."""
    from faceflax.data import images
    from faceflax.reconstruct.pipeline import ReconstructOptions, Reconstructor

    reconstructor = Reconstructor(model, ReconstructOptions(uv_size=uv_size, identity=False))
    photos = (images.default_photo("astronaut"), images.read_image(images.grace_hopper_path()))
    return np.stack([reconstructor(photo, name).completed for photo, name in zip(photos, ("astronaut", "grace"))])


def _pose(key, scale_deg: tuple[float, float, float]) -> jax.Array:
    return jnp.radians(jax.random.uniform(key, (3,), minval=-1.0, maxval=1.0) * jnp.asarray(scale_deg))


def _render(tex, verts, faces, uvs, uv_faces, camera, gamma, background):
    """Lit textured render of ``verts [V, 3]`` -> (image ``[S, S, 3]``, covered ``[S, S]``)."""
    fragments = rasterize(camera.to_clip(verts[None]), faces, camera.image_size)
    covered = fragments.tri_id[0] >= 0
    colour = texture(tex[None], interpolate(uvs[None], fragments, uv_faces))[0]
    normals = normalize(interpolate(vertex_normals(verts, faces)[None], fragments, faces)[0])
    # thesis ch. 5's 9 monochrome coefficients over Deep3DFaceRecon's ambient light, scaled so that zero
    # coefficients leave the texture's colours as they are
    ambient = SH_A[0] * SH_C[0] * INIT_LIT
    irradiance = sh_basis(normals) @ gamma.at[0].add(INIT_LIT) / ambient
    lit = jnp.clip(colour * irradiance[..., None], 0.0, 1.0)  # a camera saturates
    return jnp.where(covered[..., None], lit, background), covered


def _example(key, textures, model: MorphableModel, uv_frags, camera, lighting: bool):
    """One example from ``key`` (module docstring)."""
    faces, uvs, uv_faces = model.faces, model.uvs, model.uv_faces
    keys = jax.random.split(key, 9)
    id_coeffs = 0.8 * jax.random.normal(keys[0], (model.id_rank,))
    exp_coeffs = jax.random.uniform(keys[1], (model.exp_rank,), maxval=0.6) * jax.random.bernoulli(
        keys[2], 0.3, (model.exp_rank,)
    )
    verts = shape(model, id_coeffs, exp_coeffs)
    source = textures[jax.random.randint(keys[3], (), 0, textures.shape[0])]
    gain = jax.random.uniform(keys[4], (3,), minval=0.8, maxval=1.2)  # skin tone and white balance
    tex = jnp.clip(source * gain, 0.0, 1.0)
    gamma = jnp.where(lighting, jax.random.normal(keys[5], (9,)) * jnp.asarray([0.1] + [0.06] * 3 + [0.02] * 5), 0.0)
    corners = jax.random.uniform(keys[6], (2, 2, 3), minval=0.1, maxval=0.9)
    size = camera.image_size[0]
    background = jax.image.resize(corners, (size, size, 3), "linear")
    scale = (MAX_PITCH_DEG, MAX_YAW_DEG, MAX_ROLL_DEG)
    out = {"texture": tex, "id_coeffs": id_coeffs, "exp_coeffs": exp_coeffs, "gamma": gamma}
    centred = verts - 0.5 * (verts.min(0) + verts.max(0))
    for suffix, pose_key in (("", keys[7]), ("_2", keys[8])):
        angles = _pose(pose_key, scale)
        posed = centred @ euler_to_matrix(angles).T
        image, covered = _render(tex, posed, faces, uvs, uv_faces, camera, gamma, background)
        pix, _ = camera.project(posed[model.landmarks])
        out |= {f"image{suffix}": image, f"landmarks{suffix}": pix, f"angles{suffix}": angles}
        if not suffix:
            sample = sample_uv_texture(image[None], posed[None], faces, camera, uv_frags)
            out |= {"visible": sample.visible[0], "face_mask": covered}
    return out


@functools.partial(jax.jit, static_argnames=("lighting",))
def _examples(keys, textures, model: MorphableModel, uv_frags, camera, lighting: bool):
    """:func:`_example` vmapped over ``keys [B]``."""
    return jax.vmap(lambda key: _example(key, textures, model, uv_frags, camera, lighting))(keys)


class SyntheticFaces:
    """Random-access synthetic faces (module docstring): ``len(dataset)`` and ``dataset[i] -> dict``.

    Args:
      size: image side ``S`` (default 256, the thesis' ch. 4-5 crops).
      uv_size: texture side ``T``.
      num_examples: the dataset's length (examples are generated on demand, not stored).
      seed: examples are a function of ``(seed, index)``.
      model: the morphable model (default ICT-FaceKit through the asset registry).
      lighting: random SH light; False renders the texture as is (exactly re-samplable).
      textures: ``[N, T, T, 3]`` source textures (default :func:`source_textures`; at least 2).
    """

    def __init__(
        self,
        size: int = 256,
        uv_size: int = 256,
        num_examples: int = 10_000,
        seed: int = 0,
        model: MorphableModel | None = None,
        lighting: bool = True,
        textures: np.ndarray | None = None,
    ):
        model = load_model("ict") if model is None else model
        if len(np.asarray(model.landmarks)) != 68:
            raise ValueError(f"model {model.name!r} has no 68 landmarks; synthetic faces need them")
        textures = source_textures(model, uv_size) if textures is None else np.asarray(textures, np.float32)
        if textures.ndim != 4 or textures.shape[0] < 2 or textures.shape[1:] != (uv_size, uv_size, 3):
            raise ValueError(f"textures must be [N >= 2, {uv_size}, {uv_size}, 3], got {textures.shape}")
        self.num_examples, self.seed, self.lighting = int(num_examples), int(seed), bool(lighting)
        self.textures = jnp.asarray(textures)
        self.model = jax.device_put(model)
        self.uv_frags = uv_fragments(self.model.uvs, self.model.uv_faces, (uv_size, uv_size))
        self.camera = views.view_camera(size)

    def __len__(self) -> int:
        return self.num_examples

    def batch(self, indices) -> dict[str, np.ndarray]:
        """Examples ``indices`` stacked: every field gets a leading batch axis."""
        indices = np.asarray(indices)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_examples):
            raise IndexError(f"indices must be in [0, {self.num_examples}), got {indices.min()}..{indices.max()}")
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(self.seed), i))(jnp.asarray(indices))
        return jax.device_get(_examples(keys, self.textures, self.model, self.uv_frags, self.camera, self.lighting))

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return jax.tree.map(lambda x: x[0], self.batch([index]))
