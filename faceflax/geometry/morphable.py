"""Linear 3D morphable face models: one pytree for every source, with importers.

A model is ``S = mean + sum_i alpha_i B^id_i + sum_j beta_j B^exp_j`` (MvInvert eq. 1;
Deep3DFaceRecon ``compute_shape``) and, where the source has one, an albedo model
``T = albedo_mean + sum_k gamma_k B^alb_k``.

Conventions shared by every importer (and assumed by ``render/`` and the reconstruction code):

- Units: Deep3DFaceRecon's BFM units, 1 unit = 10 cm (BFM micrometres * 1e-5, ICT-FaceKit and
  MediaPipe centimetres * 0.1). A face is about 1.5 units wide.
- Axes: right-handed, +y up, +x toward the subject's left (image right in a frontal view),
  +z out of the face toward the camera (the nose tip has the largest z in a frontal pose).
- Centring: the mean shape is translated so that the mean vertex of the ``"face"`` region is
  the origin (Deep3DFaceRecon's ``recenter``; for BFM the face region is every vertex).
- Coefficients are unit variance: basis vectors are pre-scaled by their standard deviation
  (BFM: principal component * EV, as Deep3DFaceRecon's ``transferBFM09``; ICT-FaceKit:
  ``identity_i - neutral``, whose weights are N(0, 1)). Expression blendshapes (ICT) are
  ``blendshape - neutral`` with weights in [0, 1].
- Albedo in [0, 1] (BFM's 0..255 divided by 255).
- UVs in [0, 1]^2 in image convention: u to the right, v downward (v = 0 is the top row of
  the texture image); OBJ's v (upward) is flipped on import, ``v_img = 1 - v_obj``. UV
  triangles ``uv_faces`` parallel ``faces`` and index ``uvs``, so seams are allowed.
- Triangles are counter-clockwise seen from outside: ``(v1 - v0) x (v2 - v0)`` points
  outward. Importers check the orientation (signed volume about the centroid, which is
  positive for outward faces of a closed mesh and of a face mask seen from its concave side)
  and flip every triangle when it is negative.
- ``landmarks`` are 68 vertex indices in iBUG / dlib / Multi-PIE order (0-based), or empty
  (``[0]``) when the source has none.

Coefficient layout. The seeds regress ``c in R^239`` = 6 pose + 80 identity + 64 expression
+ 80 albedo + 9 SH (thesis ch. 5; Deep3DFaceRecon's 80/64/80 split). :func:`resize_ranks`
maps any model onto that split: it truncates larger bases (BFM09's 199/79/199, exactly as
``transferBFM09`` keeps the first 80/64/80) and zero-pads smaller ones (the ICT mirror's 20
identities and 12 expressions), so padded coefficients have no effect on the shape.
"""

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from faceflax.geometry.obj import read_obj, read_positions

PathLike = os.PathLike | str

# BFM09 micrometres -> BFM units (decimetres), as transferBFM09; cm -> BFM units.
MICROMETRES_PER_UNIT = 1e5
CENTIMETRE = 0.1

# ICT-FaceKit Light regions (README, "Face Model Topology"): vertex and polygon prefixes.
ICT_REGIONS = {"face": (9409, 9230), "face+head": (11248, 11144)}
ICT_NARROW_FACE_VERTICES = 6706  # README "Face Area Details": narrow face [0:6705]
ICT_NEUTRAL = "generic_neutral_mesh.obj"

# MediaPipe canonical face (468 vertices) -> iBUG 68, after the table of
# PeizhiYan/Mediapipe_2_Dlib_Landmarks (mp2dlib.py, MIT). Where that table averages two
# MediaPipe points (iBUG 3, 4, 12, 27, 28) the first is used, so each landmark is a vertex.
MEDIAPIPE_IBUG68 = np.array(
    # jaw 0-16
    [127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 397, 361, 323, 454, 356]
    + [156, 63, 105, 66, 107, 336, 296, 334, 293, 383]  # brows 17-26
    + [168, 197, 5, 4, 98, 97, 2, 326, 327]  # nose 27-35
    + [33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380]  # eyes 36-47
    + [61, 39, 37, 0, 267, 269, 291, 321, 314, 17, 84, 91]  # outer lips 48-59
    + [78, 82, 13, 312, 308, 317, 14, 87],  # inner lips 60-67
    np.int32,
)


@flax.struct.dataclass
class MorphableModel:
    """A linear 3D morphable model (see the module docstring for units and conventions).

    Importers return numpy leaves (host memory); ``jax.device_put(model)`` moves them.

    Attributes:
      mean: ``[V, 3]`` float32 mean shape.
      id_basis: ``[K_id, V, 3]`` float32 identity basis (unit-variance coefficients).
      exp_basis: ``[K_exp, V, 3]`` float32 expression basis.
      albedo_mean: ``[V, 3]`` float32 mean albedo in [0, 1], or None.
      albedo_basis: ``[K_alb, V, 3]`` float32 albedo basis, or None.
      faces: ``[F, 3]`` int32 triangles, counter-clockwise seen from outside.
      uvs: ``[T, 2]`` float32 texture coordinates in [0, 1], image convention (v down).
      uv_faces: ``[F, 3]`` int32 indices into ``uvs``, corner for corner with ``faces``.
      landmarks: ``[68]`` int32 iBUG-68 vertex indices, or ``[0]`` when unknown.
      regions: named ``[V]`` bool vertex masks; always has ``"face"``.
      name: short model name.
      source: where the model came from (files, options).
      expression_names: names of the expression basis vectors (ICT's ARKit names), or ().
    """

    mean: Any
    id_basis: Any
    exp_basis: Any
    albedo_mean: Any
    albedo_basis: Any
    faces: Any
    uvs: Any
    uv_faces: Any
    landmarks: Any
    regions: dict[str, Any]
    name: str = flax.struct.field(pytree_node=False, default="")
    source: str = flax.struct.field(pytree_node=False, default="")
    expression_names: tuple[str, ...] = flax.struct.field(pytree_node=False, default=())

    @property
    def num_vertices(self) -> int:
        return self.mean.shape[0]

    @property
    def id_rank(self) -> int:
        return self.id_basis.shape[0]

    @property
    def exp_rank(self) -> int:
        return self.exp_basis.shape[0]

    @property
    def albedo_rank(self) -> int:
        return 0 if self.albedo_basis is None else self.albedo_basis.shape[0]


# The array fields (all pytree fields but the regions dict), for save_npz / load_npz.
_ARRAYS = tuple(
    f.name for f in dataclasses.fields(MorphableModel) if f.metadata.get("pytree_node", True) and f.name != "regions"
)


# --------------------------------------------------------------------------- evaluation


def _linear(mean, terms, model_name: str) -> jax.Array:
    """``mean + sum coeffs @ basis``, each basis as a ``[K, V*3]`` matrix -> ``[..., V, 3]``.

    ``terms``: ``(coefficients [..., K] or None, basis [K, V, 3], what)`` triples.
    """
    num_vertices = mean.shape[0]
    out = jnp.reshape(jnp.asarray(mean), -1)
    for coeffs, basis, what in terms:
        if coeffs is None:
            continue
        rank = basis.shape[0]
        coeffs = jnp.asarray(coeffs)
        if coeffs.ndim == 0 or coeffs.shape[-1] != rank:
            raise ValueError(
                f"{what} coefficients must have length {rank} (the {what} rank of model "
                f"{model_name!r}); got shape {coeffs.shape}. resize_ranks() pads or truncates."
            )
        matrix = jnp.reshape(jnp.asarray(basis), (rank, num_vertices * 3))
        out = out + jnp.matmul(coeffs, matrix, precision=jax.lax.Precision.HIGHEST)
    return jnp.reshape(out, out.shape[:-1] + (num_vertices, 3))


def shape(
    model: MorphableModel,
    id_coeffs: ArrayLike | None = None,
    exp_coeffs: ArrayLike | None = None,
) -> jax.Array:
    """Face shape ``mean + id @ B_id + exp @ B_exp`` (MvInvert eq. 1).

    Jit- and vmap-able; leading batch dimensions of the two coefficient arrays broadcast.

    Args:
      model: the morphable model.
      id_coeffs: ``[..., K_id]`` identity coefficients (None: zeros).
      exp_coeffs: ``[..., K_exp]`` expression coefficients (None: zeros).

    Returns:
      ``[..., V, 3]`` float32 vertex positions.

    Raises:
      ValueError: when a coefficient vector's length differs from the model's rank.
    """
    terms = [
        (id_coeffs, model.id_basis, "identity"),
        (exp_coeffs, model.exp_basis, "expression"),
    ]
    return _linear(model.mean, terms, model.name)


def albedo(model: MorphableModel, tex_coeffs: ArrayLike | None = None) -> jax.Array:
    """Albedo ``albedo_mean + tex @ B_alb`` (Deep3DFaceRecon ``compute_texture``, in [0, 1]).

    Args:
      model: a model with an albedo part.
      tex_coeffs: ``[..., K_alb]`` albedo coefficients (None: zeros).

    Returns:
      ``[..., V, 3]`` float32 RGB albedo (not clipped).

    Raises:
      ValueError: when the model has no albedo or the coefficient length is wrong.
    """
    if model.albedo_mean is None:
        raise ValueError(f"model {model.name!r} has no albedo (e.g. ICT, MediaPipe)")
    terms = [(tex_coeffs, model.albedo_basis, "albedo")]
    return _linear(model.albedo_mean, terms, model.name)


def resize_ranks(
    model: MorphableModel,
    id_rank: int | None = None,
    exp_rank: int | None = None,
    albedo_rank: int | None = None,
) -> MorphableModel:
    """Truncate or zero-pad the bases to the given ranks (None: keep); numpy leaves.

    Truncation keeps the leading components (``transferBFM09`` keeps 80/64/80); padding adds
    zero basis vectors, whose coefficients do not change the shape or albedo. Expression
    names are truncated with the basis (padded components have none).
    """

    def resize(basis, rank):
        if rank is None:
            return basis
        basis = np.asarray(basis)
        padding = np.zeros((max(rank - len(basis), 0),) + basis.shape[1:], basis.dtype)
        return np.concatenate([basis[:rank], padding])

    if albedo_rank is not None and model.albedo_basis is None:
        raise ValueError(f"model {model.name!r} has no albedo model to resize")
    return model.replace(
        id_basis=resize(model.id_basis, id_rank),
        exp_basis=resize(model.exp_basis, exp_rank),
        albedo_basis=resize(model.albedo_basis, albedo_rank),
        expression_names=model.expression_names[:exp_rank],
    )


# --------------------------------------------------------------------------- npz files


def save_npz(model: MorphableModel, path: PathLike) -> None:
    """Save a model as an uncompressed ``.npz`` (arrays as stored, metadata as JSON)."""
    arrays = {key: getattr(model, key) for key in _ARRAYS}
    arrays = {key: np.asarray(a) for key, a in arrays.items() if a is not None}
    arrays.update({f"region/{k}": np.asarray(v) for k, v in model.regions.items()})
    meta = {
        "format": "faceflax.MorphableModel/1",
        "name": model.name,
        "source": model.source,
        "expression_names": list(model.expression_names),
        "regions": list(model.regions),
    }
    with open(path, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


def load_npz(path: PathLike) -> MorphableModel:
    """Load a model written by :func:`save_npz` (numpy leaves)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta.get("format") != "faceflax.MorphableModel/1":
            raise ValueError(f"{path} is not a morphable model file from save_npz")
        arrays = {key: z.get(key) for key in _ARRAYS}
        regions = {name: z[f"region/{name}"] for name in meta["regions"]}
    return MorphableModel(
        **arrays,
        regions=regions,
        name=meta["name"],
        source=meta["source"],
        expression_names=tuple(meta["expression_names"]),
    )


# --------------------------------------------------------------------------- shared import


def cylindrical_uvs(verts: np.ndarray) -> np.ndarray:
    """Cylindrical unwrap of a face mask around a vertical axis: ``[V, 3] -> [V, 2]``.

    The axis is the least-squares circle through the vertices in the xz plane (behind the
    face for a face mask). ``u`` is the arc length ``R * atan2(x - cx, z - cz)`` (increasing
    toward +x, image right), ``v`` is ``-y`` (image convention, down); both are scaled by the
    same factor so the larger extent spans [0, 1] and the other is centred, which keeps the
    texture's aspect ratio. Suits a face mask; a full head would need a seam at its back.
    """
    verts = np.asarray(verts, np.float64)
    x, y, z = verts.T
    # Kasa fit: x^2 + z^2 + a x + b z + c = 0, centre (-a/2, -b/2).
    design = np.stack([x, z, np.ones_like(x)], axis=1)
    (a, b, c), *_ = np.linalg.lstsq(design, -(x * x + z * z), rcond=None)
    cx, cz = -a / 2, -b / 2
    radius = np.sqrt(max(cx * cx + cz * cz - c, 0.0))
    arc = radius * np.arctan2(x - cx, z - cz)
    plane = np.stack([arc, -y], axis=1)
    low, extent = plane.min(0), np.ptp(plane, axis=0)
    scale = max(extent.max(), 1e-12)
    return ((plane - low) / scale + (1 - extent / scale) / 2).astype(np.float32)


def _orient_outward(verts: np.ndarray, faces: np.ndarray, uv_faces: np.ndarray):
    """Flip every triangle (and its UV triangle) when the signed volume is negative.

    ``sum_f det(v0 - c, v1 - c, v2 - c)`` about the vertex centroid ``c`` is 6x the enclosed
    volume of a closed mesh and positive for an open face mask whose normals face away from
    its centroid, i.e. outward.
    """
    rel = np.asarray(verts, np.float64) - np.mean(verts, axis=0)
    v0, v1, v2 = (rel[faces[:, k]] for k in range(3))
    if np.sum(np.cross(v0, v1) * v2) >= 0:
        return faces, uv_faces
    return faces[:, ::-1].copy(), uv_faces[:, ::-1].copy()


def _crop(faces: np.ndarray, keep: np.ndarray, num_vertices: int) -> np.ndarray:
    """Triangles whose vertices are all in ``keep``, re-indexed to positions in ``keep``."""
    new_index = np.full(num_vertices, -1, np.int64)
    new_index[keep] = np.arange(len(keep))
    cropped = new_index[faces]
    return cropped[np.all(cropped >= 0, axis=1)]


def _build(
    *,
    name: str,
    source: str,
    mean: np.ndarray,
    id_basis: np.ndarray,
    exp_basis: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray | None = None,
    uv_faces: np.ndarray | None = None,
    albedo_mean: np.ndarray | None = None,
    albedo_basis: np.ndarray | None = None,
    landmarks: ArrayLike | None = None,
    regions: dict[str, np.ndarray] | None = None,
    expression_names: tuple[str, ...] = (),
) -> MorphableModel:
    """Validate, orient, recentre and cast the parts of a model (see module conventions).

    ``uvs`` of shape ``[V, 2]`` without ``uv_faces`` are per-vertex (``uv_faces = faces``);
    no ``uvs`` at all gives :func:`cylindrical_uvs` of the mean shape.
    """
    mean = np.asarray(mean, np.float64)
    num_vertices = len(mean)
    faces = np.asarray(faces, np.int64)
    valid = faces.ndim == 2 and faces.shape[1] == 3
    if not valid or np.any((faces < 0) | (faces >= num_vertices)):
        raise ValueError(f"{name}: triangles must be [F, 3] indices < {num_vertices}")
    regions = {k: np.asarray(v, bool).reshape(-1) for k, v in (regions or {}).items()}
    regions.setdefault("face", np.ones(num_vertices, bool))
    if any(mask.shape != (num_vertices,) for mask in regions.values()):
        raise ValueError(f"{name}: region masks must have {num_vertices} entries")
    regions = {"face": regions.pop("face"), **regions}
    mean = mean - mean[regions["face"]].mean(axis=0)  # Deep3DFaceRecon's recenter
    if uvs is None:
        uvs = cylindrical_uvs(mean)
    uvs = np.asarray(uvs, np.float32)
    if uv_faces is None:
        if uvs.shape != (num_vertices, 2):
            message = f"per-vertex uvs must be [{num_vertices}, 2], got {uvs.shape}"
            raise ValueError(f"{name}: {message}")
        uv_faces = faces
    uv_faces = np.asarray(uv_faces, np.int64)
    faces, uv_faces = _orient_outward(mean, faces, uv_faces)
    landmarks = np.asarray([] if landmarks is None else landmarks, np.int32)
    outside = np.any((landmarks < 0) | (landmarks >= num_vertices))
    if landmarks.shape not in ((68,), (0,)) or outside:
        raise ValueError(f"{name}: landmarks must be 68 indices < {num_vertices}")

    def f32(x):
        return None if x is None else np.ascontiguousarray(x, np.float32)

    return MorphableModel(
        mean=f32(mean),
        id_basis=f32(np.reshape(id_basis, (-1, num_vertices, 3))),
        exp_basis=f32(np.reshape(exp_basis, (-1, num_vertices, 3))),
        albedo_mean=f32(albedo_mean),
        albedo_basis=f32(albedo_basis),
        faces=faces.astype(np.int32),
        uvs=uvs,
        uv_faces=uv_faces.astype(np.int32),
        landmarks=landmarks,
        regions=regions,
        name=name,
        source=source,
        expression_names=tuple(expression_names),
    )


# --------------------------------------------------------------------------- Basel Face Model


def _loadmat(path: PathLike, fields: tuple[str, ...]) -> dict[str, np.ndarray]:
    # Deferred: scipy.io is only needed by the BFM importers.
    from scipy.io import loadmat

    data = loadmat(path)
    missing = [k for k in fields if k not in data]
    if missing:
        raise ValueError(f"{path} lacks the fields {missing}; is it the right file?")
    return data


def _one_based(values: np.ndarray) -> np.ndarray:
    """MATLAB 1-based indices (any dtype) -> 0-based int64, flattened."""
    return np.rint(np.asarray(values, np.float64)).astype(np.int64).reshape(-1) - 1


def _basis(columns: np.ndarray) -> np.ndarray:
    """``[3V, K]`` basis columns (xyz interleaved, MATLAB layout) -> ``[K, V, 3]``."""
    return np.asarray(columns).T.reshape(columns.shape[1], -1, 3)


def _scaled_pcs(pcs: np.ndarray, std: np.ndarray, units: float) -> np.ndarray:
    """``pcs [3V, K] * std [K] / units`` in the file's precision, as ``transferBFM09``."""
    return _basis(pcs * np.reshape(std, (1, -1)) / units)


def read_exp_pca(exp_pca_path: PathLike, exp_std_path: PathLike) -> np.ndarray:
    """Guo et al.'s expression PCA (``Exp_Pca.bin`` + ``std_exp.txt``) in BFM units.

    Layout, as Deep3DFaceRecon's ``LoadExpBasis`` reads it: int32 ``dim`` (79), float32 mean
    ``[3N]`` (unused there and here), float32 components ``[dim, 3N]`` (one row per component,
    xyz interleaved), with N = 53,215 (the 3DDFA vertex subset of BFM09). ``std_exp.txt``
    holds the ``dim`` standard deviations.

    Returns:
      ``[dim, N, 3]`` float64 expression basis (components * std * 1e-5).
    """
    data = Path(exp_pca_path).read_bytes()
    layout = "int32 dim, float32 mean [3N], float32 components [dim, 3N]"
    if len(data) < 8 or len(data) % 4:
        raise ValueError(f"{exp_pca_path} is not an Exp_Pca.bin ({layout})")
    dim = int(np.frombuffer(data[:4], "<i4")[0])
    values = np.frombuffer(data[4:], "<f4")
    if dim <= 0 or values.size % (3 * (dim + 1)):
        message = f"{len(data)} bytes do not fit dim = {dim}"
        raise ValueError(f"{exp_pca_path} is not an Exp_Pca.bin ({layout}): {message}")
    num_vertices = values.size // (3 * (dim + 1))
    pcs = values[3 * num_vertices :].reshape(dim, 3 * num_vertices)
    std = np.loadtxt(exp_std_path, dtype=np.float64).reshape(-1)
    if std.size != dim:
        message = f"{exp_std_path} has {std.size} values, {exp_pca_path} {dim} PCs"
        raise ValueError(message)
    return _scaled_pcs(pcs.T, std, MICROMETRES_PER_UNIT)


def load_bfm_uv(path: PathLike, front_idx_path: PathLike | None = None) -> np.ndarray:
    """Per-vertex UVs of BFM from ``BFM_UV.mat`` (3DDFA / 3DMMasSTN, field ``UV``).

    ``UV`` is ``[53215, 2]`` on the 3DDFA vertex subset, v up (face3d flips it for images);
    it is returned in image convention (``v = 1 - v``). With ``BFM_front_idx.mat`` the
    35,709 front-face vertices are selected, as Deep3DFaceRecon's ``transferBFM09``.

    Returns:
      ``[V, 2]`` float32, for the ``uvs`` argument of :func:`from_bfm2009` /
      :func:`from_bfm_front`.
    """
    uv = np.asarray(_loadmat(path, ("UV",))["UV"], np.float64)[:, :2]
    if front_idx_path is not None:
        uv = uv[_one_based(_loadmat(front_idx_path, ("idx",))["idx"])]
    return np.stack([uv[:, 0], 1 - uv[:, 1]], axis=1).astype(np.float32)


def from_bfm2009(
    mat_path: PathLike,
    exp_pca_path: PathLike | None = None,
    exp_std_path: PathLike | None = None,
    *,
    exp_idx_path: PathLike | None = None,
    front_idx_path: PathLike | None = None,
    info_path: PathLike | None = None,
    landmarks: ArrayLike | None = None,
    uvs: ArrayLike | None = None,
    name: str = "bfm2009",
) -> MorphableModel:
    """Basel Face Model 2009 (``01_MorphableModel.mat``), optionally with expressions.

    ``01_MorphableModel.mat`` holds ``shapeMU [3V, 1]``, ``shapePC [3V, 199]``, ``shapeEV
    [199, 1]``, ``texMU``, ``texPC``, ``texEV`` (colour 0..255) and ``tl [F, 3]`` (1-based),
    V = 53,490, micrometres. Bases are PC * EV (Deep3DFaceRecon's ``transferBFM09``), all
    ranks kept (199 / 79 / 199; :func:`resize_ranks` for 80 / 64 / 80).

    The expression PCA (:func:`read_exp_pca`) lives on a 53,215-vertex subset; the vertex
    maps are the 3DDFA files that ``transferBFM09`` reads: ``BFM_exp_idx.mat`` (``trimIndex``,
    1-based into the 53,490) and ``BFM_front_idx.mat`` (``idx``, 1-based into the 53,215;
    the 35,709-vertex front face). ``facemodel_info.mat`` (``tri``, ``keypoints``,
    ``skinmask``, ``frontmask2_idx``) gives the front face's triangles, landmarks and regions;
    with all three the result equals :func:`from_bfm_front` of the ``BFM_model_front.mat``
    that ``transferBFM09`` writes (up to the ranks). The expression mean of ``Exp_Pca.bin`` is
    ignored, as in ``transferBFM09``. Without ``info_path``, triangles are those of ``tl``
    whose three vertices survive the vertex selection.

    Args:
      mat_path: ``01_MorphableModel.mat``.
      exp_pca_path, exp_std_path: ``Exp_Pca.bin`` and ``std_exp.txt`` (both or neither).
      exp_idx_path: ``BFM_exp_idx.mat``; needed with the expression PCA or a front index.
      front_idx_path: ``BFM_front_idx.mat``: crop to the 35,709-vertex front face.
      info_path: ``facemodel_info.mat`` (needs ``front_idx_path``).
      landmarks: ``[68]`` 0-based vertex indices (overrides ``info_path``'s keypoints).
      uvs: ``[V, 2]`` per-vertex UVs in image convention (e.g. :func:`load_bfm_uv`);
        default :func:`cylindrical_uvs`.
      name: model name.
    """
    fields = ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV", "tl")
    bfm = _loadmat(mat_path, fields)
    if (exp_pca_path is None) != (exp_std_path is None):
        raise ValueError("pass both exp_pca_path (Exp_Pca.bin) and exp_std_path")
    if front_idx_path is not None and exp_idx_path is None:
        raise ValueError("front_idx_path indexes the 53,215 subset: pass exp_idx_path")
    if info_path is not None and front_idx_path is None:
        raise ValueError("info_path describes the front face: pass front_idx_path")
    mean = np.asarray(bfm["shapeMU"], np.float64).reshape(-1, 3) / MICROMETRES_PER_UNIT
    num_full = len(mean)
    keep = np.arange(num_full)
    if exp_idx_path is not None:
        keep = _one_based(_loadmat(exp_idx_path, ("trimIndex",))["trimIndex"])
    exp_basis = np.zeros((0, len(keep), 3))
    if exp_pca_path is not None:
        exp_basis = read_exp_pca(exp_pca_path, exp_std_path)
        if exp_basis.shape[1] != len(keep):
            raise ValueError(
                f"{exp_pca_path} has {exp_basis.shape[1]} vertices, the shape model "
                f"{len(keep)}: pass exp_idx_path=BFM_exp_idx.mat (3DDFA) to map them"
            )
    if front_idx_path is not None:
        front = _one_based(_loadmat(front_idx_path, ("idx",))["idx"])
        keep, exp_basis = keep[front], exp_basis[:, front]

    regions = {}
    if info_path is not None:
        info = _loadmat(info_path, ("tri", "keypoints", "skinmask", "frontmask2_idx"))
        faces = _one_based(info["tri"]).reshape(-1, 3)
        landmarks = _one_based(info["keypoints"]) if landmarks is None else landmarks
        regions = _front_regions(info, len(keep))
    else:
        faces = _crop(_one_based(bfm["tl"]).reshape(-1, 3), keep, num_full)
    sources = [mat_path, exp_pca_path, exp_std_path, exp_idx_path, front_idx_path]
    sources = [os.fspath(p) for p in sources + [info_path] if p is not None]
    id_basis = _scaled_pcs(bfm["shapePC"], bfm["shapeEV"], MICROMETRES_PER_UNIT)
    return _build(
        name=name,
        source="BFM09: " + ", ".join(sources),
        mean=mean[keep],
        id_basis=id_basis[:, keep],
        exp_basis=exp_basis,
        albedo_mean=np.asarray(bfm["texMU"], np.float64).reshape(-1, 3)[keep] / 255,
        albedo_basis=_scaled_pcs(bfm["texPC"], bfm["texEV"], 255.0)[:, keep],
        faces=faces,
        uvs=uvs,
        landmarks=landmarks,
        regions=regions,
    )


def _front_regions(info: dict, num_vertices: int) -> dict[str, np.ndarray]:
    """Deep3DFaceRecon's masks: ``front`` (``frontmask2_idx``, photometric loss region) and
    ``skin`` (``skinmask``, reflectance regulariser region)."""
    front = np.zeros(num_vertices, bool)
    front[_one_based(info["frontmask2_idx"])] = True
    skin = np.asarray(info["skinmask"]).reshape(-1) > 0
    return {"front": front, "skin": skin}


def from_bfm_front(mat_path: PathLike, uvs: ArrayLike | None = None, name: str = "bfm_front") -> MorphableModel:
    """Deep3DFaceRecon's ``BFM_model_front.mat`` (35,709 vertices, 80 / 64 / 80 ranks).

    Fields (as ``transferBFM09`` writes them): ``meanshape [1, 3V]`` (BFM units),
    ``idBase [3V, 80]``, ``exBase [3V, 64]``, ``meantex [1, 3V]`` (0..255), ``texBase
    [3V, 80]``, ``tri [F, 3]``, ``keypoints [1, 68]``, ``frontmask2_idx [N, 1]`` (all
    1-based), ``skinmask [1, V]``, and ``point_buf`` / ``tri_mask2`` (not needed: vertex
    adjacency is recomputed from ``faces``, and the front triangles are those of
    ``regions["front"]``).

    Args:
      mat_path: ``BFM_model_front.mat``.
      uvs: ``[V, 2]`` per-vertex UVs in image convention (e.g. :func:`load_bfm_uv` with
        ``BFM_front_idx.mat``); default :func:`cylindrical_uvs`.
      name: model name.
    """
    fields = ("meanshape", "meantex", "idBase", "exBase", "texBase", "tri", "keypoints")
    fields += ("skinmask", "frontmask2_idx")
    bfm = _loadmat(mat_path, fields)
    mean = np.asarray(bfm["meanshape"], np.float64).reshape(-1, 3)
    return _build(
        name=name,
        source=f"Deep3DFaceRecon BFM_model_front: {os.fspath(mat_path)}",
        mean=mean,
        id_basis=_basis(bfm["idBase"]),
        exp_basis=_basis(bfm["exBase"]),
        albedo_mean=np.asarray(bfm["meantex"], np.float64).reshape(-1, 3) / 255,
        albedo_basis=_basis(bfm["texBase"] / 255.0),
        faces=_one_based(bfm["tri"]).reshape(-1, 3),
        uvs=uvs,
        landmarks=_one_based(bfm["keypoints"]),
        regions=_front_regions(bfm, len(mean)),
    )


# --------------------------------------------------------------------------- OBJ sources


def from_ict(folder: PathLike, region: str = "face") -> MorphableModel:
    """ICT-FaceKit Light (``FaceXModel/`` folder of OBJs + ``vertex_indices.json``).

    Identity rank = the number of ``identityNNN.obj`` files (contiguous from 000); expressions
    = the ARKit blendshapes of ``vertex_indices.json["expressions"]`` that are present, in that
    order. Bases are ``(mesh - neutral) * 0.1`` (cm -> BFM units); landmarks are
    ``idx_to_landmark_verts`` (the README's 68 Multi-PIE vertices).

    ``region`` selects a prefix of the topology (ICT README tables): ``"face"`` = vertices
    [0:9408] and polygons [0:9229]; ``"face+head"`` = vertices [0:11247] and polygons
    [0:11143]. Triangles are selected by polygon range (not by "all vertices inside", which
    would also take one head/neck triangle spanning face vertices, with head UVs). UVs are
    UDIM tiles (face u in [0, 1], head and neck u in [1, 2]): "face" keeps u, "face+head"
    uses u / 2 (face on the left half of one texture, head and neck on the right); v is
    flipped to image convention; unused UVs are dropped.

    Regions: ``face`` (the face area), ``narrow_face`` (vertices [0:6705]), ``rigid``
    (``idx_to_rigid_verts``) and, for "face+head", ``head``.
    """
    folder = Path(folder)
    if region not in ICT_REGIONS:
        raise ValueError(f"region must be one of {sorted(ICT_REGIONS)}, got {region!r}")
    for file in (ICT_NEUTRAL, "vertex_indices.json"):
        if not (folder / file).is_file():
            raise ValueError(f"{folder} has no {file}: pass ICT-FaceKit's FaceXModel/")
    num_vertices, num_polygons = ICT_REGIONS[region]
    indices = json.loads((folder / "vertex_indices.json").read_text())
    neutral = read_obj(folder / ICT_NEUTRAL)
    if len(neutral.positions) < num_vertices or neutral.uv_faces is None:
        raise ValueError(f"{folder / ICT_NEUTRAL} is not the ICT-FaceKit neutral mesh")

    numbers = sorted(
        int(m.group(1)) for p in folder.glob("identity*.obj") if (m := re.fullmatch(r"identity(\d+)\.obj", p.name))
    )
    missing = sorted(set(range(len(numbers))) - set(numbers))
    if missing:
        names = ", ".join(f"identity{i:03d}.obj" for i in missing)
        raise ValueError(f"{folder}: identity files must be contiguous from identity000.obj; missing {names}")
    present = [e for e in indices["expressions"] if (folder / f"{e}.obj").is_file()]
    expressions = tuple(present)

    def deltas(names: list[str]) -> np.ndarray:
        out = np.empty((len(names), num_vertices, 3), np.float32)
        for i, file in enumerate(names):
            positions = read_positions(folder / file)
            if positions.shape != neutral.positions.shape:
                raise ValueError(
                    f"{folder / file} has {len(positions)} vertices, the neutral mesh "
                    f"{len(neutral.positions)}: not the same topology"
                )
            out[i] = (positions - neutral.positions)[:num_vertices] * CENTIMETRE
        return out

    keep = neutral.face_source < num_polygons
    faces, uv_faces = neutral.faces[keep], neutral.uv_faces[keep]
    if faces.max() >= num_vertices:
        raise ValueError(f"{folder / ICT_NEUTRAL}: {region} polygons leave the region")
    used, uv_faces = np.unique(uv_faces, return_inverse=True)
    uvs = neutral.uvs[used]
    u = uvs[:, 0] / 2 if region == "face+head" else uvs[:, 0]
    vertex = np.arange(num_vertices)
    regions = {
        "face": vertex < ICT_REGIONS["face"][0],
        "narrow_face": vertex < ICT_NARROW_FACE_VERTICES,
        "rigid": np.isin(vertex, indices["idx_to_rigid_verts"]),
    }
    if region == "face+head":
        regions["head"] = ~regions["face"]
    return _build(
        name=f"ict_{region}",
        source=f"ICT-FaceKit Light: {folder} (region {region})",
        mean=neutral.positions[:num_vertices] * CENTIMETRE,
        id_basis=deltas([f"identity{i:03d}.obj" for i in numbers]),
        exp_basis=deltas([f"{e}.obj" for e in expressions]),
        faces=faces,
        uvs=np.stack([u, 1 - uvs[:, 1]], axis=1),
        uv_faces=uv_faces.reshape(-1, 3),
        landmarks=indices["idx_to_landmark_verts"],
        regions=regions,
        expression_names=expressions,
    )


def from_obj(
    path: PathLike,
    name: str | None = None,
    landmarks: ArrayLike | None = None,
    scale: float = CENTIMETRE,
) -> MorphableModel:
    """Any textured OBJ as a mean-only model (``K_id = K_exp = 0``, no albedo).

    E.g. the MediaPipe canonical face (``canonical_face_model.obj``, centimetres) with
    ``landmarks=MEDIAPIPE_IBUG68``. The OBJ must use the module's axes (+y up, +z toward the
    viewer); positions are multiplied by ``scale`` (default cm -> BFM units) and recentred,
    v is flipped to image convention, polygons are fan-triangulated.

    Args:
      path: the ``.obj`` file, with ``vt`` on every face.
      name: model name (default: the file stem).
      landmarks: ``[68]`` 0-based iBUG-68 vertex indices, or None (empty).
      scale: OBJ units -> BFM units.
    """
    mesh = read_obj(path)
    if mesh.uv_faces is None or np.any(mesh.uv_faces < 0):
        raise ValueError(f"{path}: every face needs texture coordinates (f v/vt ...)")
    return _build(
        name=name or Path(path).stem,
        source=f"OBJ: {os.fspath(path)} (scale {scale})",
        mean=mesh.positions * scale,
        id_basis=np.zeros((0, len(mesh.positions), 3)),
        exp_basis=np.zeros((0, len(mesh.positions), 3)),
        faces=mesh.faces,
        uvs=np.stack([mesh.uvs[:, 0], 1 - mesh.uvs[:, 1]], axis=1),
        uv_faces=mesh.uv_faces,
        landmarks=landmarks,
    )


def load_model(spec: str, *, download: bool = True) -> MorphableModel:
    """A model by name through the asset registry: ``ict``, ``ict+head``, ``mediapipe``,
    ``bfm:PATH`` (a ``BFM_model_front.mat`` file, or a folder holding one, or the BFM 2009
    ``01_MorphableModel.mat`` with whichever of Deep3DFaceRecon's ``Exp_Pca.bin``,
    ``std_exp.txt``, ``BFM_exp_idx.mat``, ``BFM_front_idx.mat`` and ``facemodel_info.mat`` sit
    beside it) or ``npz:PATH``.
    """
    from faceflax import assets

    kind, _, path = spec.partition(":")
    if kind in ("ict", "ict+head") and not path:
        folder = assets.resolve("ict-facekit", download=download)
        return from_ict(folder, region="face+head" if kind == "ict+head" else "face")
    if kind == "mediapipe" and not path:
        folder = assets.resolve("mediapipe", download=download)
        return from_obj(folder / "canonical_face_model.obj", "mediapipe", MEDIAPIPE_IBUG68)
    if kind == "npz" and path:
        return load_npz(path)
    if kind == "bfm" and path:
        location = Path(path)
        front = location if location.is_file() else location / "BFM_model_front.mat"
        if front.is_file():
            return from_bfm_front(front)
        full = location / "01_MorphableModel.mat"
        if full.is_file():

            def optional(name):
                return location / name if (location / name).is_file() else None

            return from_bfm2009(
                full,
                optional("Exp_Pca.bin"),
                optional("std_exp.txt"),
                exp_idx_path=optional("BFM_exp_idx.mat"),
                front_idx_path=optional("BFM_front_idx.mat"),
                info_path=optional("facemodel_info.mat"),
            )
        raise ValueError(
            f"no Basel Face Model at {path}: expected BFM_model_front.mat or 01_MorphableModel.mat. "
            + assets.ASSETS["bfm"].how_to_get
        )
    raise ValueError(f"unknown morphable model {spec!r}: use ict, ict+head, mediapipe, bfm:PATH or npz:PATH")
