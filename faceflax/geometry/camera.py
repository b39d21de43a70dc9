"""Cameras: perspective (Deep3DFaceRecon) and weak perspective, to pixels and clip space.

Coordinate conventions used by the whole library:

* **Model / world space** — ``+y`` up, ``+z`` toward the camera, ``+x`` to the image's right in
  a frontal view; Deep3DFaceRecon's units (a face is about 1.5 units wide). Poses
  (``faceflax.geometry.rotation``) are applied in this space.
* **View space** — Deep3DFaceRecon ``models/bfm.py`` ``to_camera``: the camera sits on the
  ``+z`` axis at ``distance`` looking toward ``-z``; ``depth = distance - z > 0`` in front.
* **Pixels** — ``x`` right, ``y`` *down*, pixel centres at integer coordinates (dlib / OpenCV
  landmarks), images ``(H, W)``. Pixel ``(x, y)`` covers ``[x - 0.5, x + 0.5]``.
* **Clip space** (consumed by the rasterizer, nvdiffrast-style) — ``ndc = clip.xyz / clip.w``
  with ``x_ndc = (x_pix + 0.5) * 2 / W - 1`` and ``y_ndc = (y_pix + 0.5) * 2 / H - 1``, so row
  0 of a rendered image is ``y_ndc = -1``, the top of the image; ``z_ndc`` in ``[-1, 1]``,
  ``-1`` at the near plane, smaller is nearer; ``w > 0`` in front of the camera.

Deep3DFaceRecon's ``to_image`` returns ``y`` pointing *up* (its landmarks are flipped with
``H - 1 - y`` on loading); :meth:`PerspectiveCamera.project` applies that flip, so its pixels
compare directly with detected landmarks. Its principal point ``(cx, cy)`` is therefore given
in Deep3DFaceRecon's bottom-up frame: the optical axis meets pixel ``(cx, H - 1 - cy)``.
"""

from typing import Self

import jax
import jax.numpy as jnp
from flax import struct
from jax.typing import ArrayLike

from faceflax.geometry.mesh import normalize

_HIGHEST = jax.lax.Precision.HIGHEST


def _per_vertex(x: ArrayLike) -> jax.Array:
    """A camera leaf ``[...]`` as ``[..., 1]`` so it broadcasts over a vertex axis."""
    return jnp.asarray(x)[..., None]


def _stack_matrix(rows: tuple[tuple[ArrayLike, ...], ...]) -> jax.Array:
    """Nested rows of broadcastable scalars ``[...]`` -> ``[..., R, C]``."""
    entries = jnp.broadcast_arrays(*(e for row in rows for e in row))
    flat = jnp.stack(entries, axis=-1)
    return flat.reshape(*flat.shape[:-1], len(rows), len(rows[0]))


def _apply_homogeneous(matrix: jax.Array, verts: ArrayLike) -> jax.Array:
    """``matrix [..., 4, 4] @ (x, y, z, 1)`` per vertex: ``[..., V, 3]`` -> ``[..., V, 4]``."""
    verts = jnp.asarray(verts)
    homogeneous = jnp.concatenate([verts, jnp.ones_like(verts[..., :1])], axis=-1)
    return jnp.matmul(homogeneous, jnp.swapaxes(matrix, -1, -2), precision=_HIGHEST)


@struct.dataclass
class PerspectiveCamera:
    """Deep3DFaceRecon's pinhole camera (``focal 1015``, centre 112 at 224 px, ``z = 10``).

    Numeric fields are pytree leaves (scalars or ``[...]`` arrays that broadcast against the
    vertices' batch dims, or batched with ``vmap``); ``image_size = (H, W)`` is static.
    ``znear``/``zfar`` (Deep3DFaceRecon ``facerecon_model.py``: 5 and 15) bound ``z_ndc``.
    """

    focal: ArrayLike = 1015.0
    cx: ArrayLike = 112.0
    cy: ArrayLike = 112.0
    distance: ArrayLike = 10.0
    znear: ArrayLike = 5.0
    zfar: ArrayLike = 15.0
    image_size: tuple[int, int] = struct.field(pytree_node=False, default=(224, 224))

    @classmethod
    def for_image_size(cls, image_size: tuple[int, int], reference: Self | None = None) -> Self:
        """``reference`` (default: Deep3DFaceRecon's camera) with intrinsics rescaled.

        With pixel centres at integers the continuous image coordinate is ``pix + 0.5``, so
        ``focal' = s focal`` and ``c' = s (c + 0.5) - 0.5`` with ``s = W' / W = H' / H``; NDC
        (and so the rendering) is unchanged.

        Args:
          image_size: the new static ``(H, W)``; same aspect ratio as the reference.
          reference: the camera to rescale.

        Returns:
          The rescaled camera.
        """
        reference = cls() if reference is None else reference
        (h, w), (new_h, new_w) = reference.image_size, tuple(image_size)
        if new_h * w != new_w * h:
            raise ValueError(
                f"cannot rescale a {h}x{w} camera to {new_h}x{new_w}: one focal length needs "
                "the same aspect ratio; crop or pad the image to it first"
            )
        s = new_w / w
        return reference.replace(
            focal=jnp.asarray(reference.focal) * s,
            cx=(jnp.asarray(reference.cx) + 0.5) * s - 0.5,
            cy=(jnp.asarray(reference.cy) + 0.5) * s - 0.5,
            image_size=(new_h, new_w),
        )

    @jax.jit
    def to_view(self, verts: ArrayLike) -> jax.Array:
        """Deep3DFaceRecon ``to_camera``: ``(x, y, z) -> (x, y, distance - z)``.

        Args:
          verts: ``[..., V, 3]`` float32 model-space points.

        Returns:
          ``[..., V, 3]`` float32 ``(x, y, depth)``.
        """
        verts = jnp.asarray(verts)
        depth = _per_vertex(self.distance) - verts[..., 2]
        return jnp.concatenate([verts[..., :2], depth[..., None]], axis=-1)

    @jax.jit
    def project(self, verts: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """Pixels and depth: Deep3DFaceRecon ``to_image`` then its flip to top-down rows.

        ``x_pix = focal x / depth + cx``, ``y_pix = (H - 1) - (focal y / depth + cy)``,
        ``depth = distance - z``.

        Args:
          verts: ``[..., V, 3]`` float32 model-space points.

        Returns:
          ``(pix [..., V, 2], depth [..., V])`` float32.
        """
        view = self.to_view(verts)
        focal, depth = _per_vertex(self.focal), view[..., 2]
        x_pix = focal * view[..., 0] / depth + _per_vertex(self.cx)
        y_pix = (self.image_size[0] - 1) - (focal * view[..., 1] / depth + _per_vertex(self.cy))
        return jnp.stack([x_pix, y_pix], axis=-1), depth

    @jax.jit
    def clip_matrix(self) -> jax.Array:
        """The projection matrix from model-space ``(x, y, z, 1)`` to clip coordinates.

        With ``D = distance - z`` (``clip.w``), ``sx = 2 focal / W``, ``sy = 2 focal / H``,
        ``kx = 2 (cx + 0.5) / W - 1``, ``ky = 1 - 2 (cy + 0.5) / H``:
        ``clip.x = sx x + kx D``, ``clip.y = -sy y + ky D`` (so ``clip.xy / w`` is the NDC of
        :meth:`project`'s pixel) and ``clip.z = A D + B`` with ``A = (f + n) / (f - n)``,
        ``B = -2 f n / (f - n)`` (OpenGL depth, Deep3DFaceRecon ``util/nvdiffrast.py``
        ``ndc_projection``): ``D = znear -> z_ndc = -1``, ``D = zfar -> +1``.

        Returns:
          ``[..., 4, 4]`` float32.
        """
        h, w = self.image_size
        focal, d = jnp.asarray(self.focal), jnp.asarray(self.distance)
        near, far = jnp.asarray(self.znear), jnp.asarray(self.zfar)
        sx, sy = 2 * focal / w, 2 * focal / h
        kx = 2 * (jnp.asarray(self.cx) + 0.5) / w - 1
        ky = 1 - 2 * (jnp.asarray(self.cy) + 0.5) / h
        a = (far + near) / (far - near)
        b = -2 * far * near / (far - near)
        return _stack_matrix(
            (
                (sx, 0.0, -kx, kx * d),
                (0.0, -sy, -ky, ky * d),
                (0.0, 0.0, -a, a * d + b),
                (0.0, 0.0, -1.0, d),
            )
        )

    @jax.jit
    def to_clip(self, verts: ArrayLike) -> jax.Array:
        """Homogeneous clip coordinates ``clip_matrix() @ (x, y, z, 1)``.

        Args:
          verts: ``[..., V, 3]`` float32 model-space points.

        Returns:
          ``[..., V, 4]`` float32; ``w = depth``.
        """
        return _apply_homogeneous(self.clip_matrix(), verts)

    @jax.jit
    def camera_position(self) -> jax.Array:
        """The centre of projection in model space, ``(0, 0, distance)``: ``[..., 3]``."""
        d = jnp.asarray(self.distance)
        return jnp.stack([jnp.zeros_like(d), jnp.zeros_like(d), d], axis=-1)

    @jax.jit
    def view_directions(self, verts: ArrayLike) -> jax.Array:
        """Unit vectors from each point toward the camera: ``[..., V, 3]``."""
        return normalize(self.camera_position()[..., None, :] - jnp.asarray(verts))


@struct.dataclass
class WeakPerspectiveCamera:
    """Scaled orthographic camera: ``x_pix = s x + tx``, ``y_pix = ty - s y``.

    ``tx``, ``ty`` are pixels. The defaults are :class:`PerspectiveCamera`'s defaults
    linearised at ``z = 0`` (``s = focal / distance``, ``tx = cx``, ``ty = H - 1 - cy``), so
    both project points on the plane ``z = 0`` identically. Depth is ``distance - z`` as for
    the perspective camera, mapped affinely to ``z_ndc``: ``znear -> -1``, ``zfar -> +1``.
    The view direction is ``+z`` everywhere. Numeric fields are pytree leaves.
    """

    scale: ArrayLike = 101.5
    tx: ArrayLike = 112.0
    ty: ArrayLike = 111.0
    distance: ArrayLike = 10.0
    znear: ArrayLike = 5.0
    zfar: ArrayLike = 15.0
    image_size: tuple[int, int] = struct.field(pytree_node=False, default=(224, 224))

    @jax.jit
    def project(self, verts: ArrayLike) -> tuple[jax.Array, jax.Array]:
        """Pixels ``(s x + tx, ty - s y)`` and depth ``distance - z``.

        Args:
          verts: ``[..., V, 3]`` float32 model-space points.

        Returns:
          ``(pix [..., V, 2], depth [..., V])`` float32.
        """
        verts = jnp.asarray(verts)
        s = _per_vertex(self.scale)
        x_pix = s * verts[..., 0] + _per_vertex(self.tx)
        y_pix = _per_vertex(self.ty) - s * verts[..., 1]
        depth = _per_vertex(self.distance) - verts[..., 2]
        return jnp.stack([x_pix, y_pix], axis=-1), depth

    @jax.jit
    def clip_matrix(self) -> jax.Array:
        """Affine map from model-space ``(x, y, z, 1)`` to clip coordinates (``w = 1``).

        ``clip.x = (2 s / W) x + 2 (tx + 0.5) / W - 1``,
        ``clip.y = -(2 s / H) y + 2 (ty + 0.5) / H - 1`` (the NDC of :meth:`project`'s
        pixel), ``clip.z = 2 (distance - z - znear) / (zfar - znear) - 1``.

        Returns:
          ``[..., 4, 4]`` float32.
        """
        h, w = self.image_size
        s = jnp.asarray(self.scale)
        near, far = jnp.asarray(self.znear), jnp.asarray(self.zfar)
        kz = 2 / (far - near)
        return _stack_matrix(
            (
                (2 * s / w, 0.0, 0.0, 2 * (jnp.asarray(self.tx) + 0.5) / w - 1),
                (0.0, -2 * s / h, 0.0, 2 * (jnp.asarray(self.ty) + 0.5) / h - 1),
                (0.0, 0.0, -kz, kz * (jnp.asarray(self.distance) - near) - 1),
                (0.0, 0.0, 0.0, 1.0),
            )
        )

    @jax.jit
    def to_clip(self, verts: ArrayLike) -> jax.Array:
        """Homogeneous clip coordinates ``clip_matrix() @ (x, y, z, 1)``.

        Args:
          verts: ``[..., V, 3]`` float32 model-space points.

        Returns:
          ``[..., V, 4]`` float32; ``w = 1``.
        """
        return _apply_homogeneous(self.clip_matrix(), verts)

    @jax.jit
    def view_directions(self, verts: ArrayLike) -> jax.Array:
        """The orthographic view direction ``+z`` for every point: ``[..., V, 3]``."""
        verts = jnp.asarray(verts)
        return jnp.broadcast_to(jnp.array([0.0, 0.0, 1.0], verts.dtype), verts.shape)


Camera = PerspectiveCamera | WeakPerspectiveCamera


@jax.jit
def project_landmarks(camera: Camera, verts: ArrayLike, indices: ArrayLike) -> jax.Array:
    """Pixel positions of landmark vertices (Deep3DFaceRecon ``get_landmarks``).

    Args:
      camera: either camera.
      verts: ``[..., V, 3]`` float32 model-space points.
      indices: ``[L]`` int32 vertex indices, e.g. the 68 iBUG landmarks.

    Returns:
      ``[..., L, 2]`` float32 pixels (x right, y down).
    """
    pix, _ = camera.project(verts)
    return jnp.take(pix, jnp.asarray(indices), axis=-2)
