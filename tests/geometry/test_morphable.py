"""Morphable models: evaluation, npz round trip, BFM importers (synthetic files in the real
layouts), ICT-FaceKit and MediaPipe (asset mirror): conventions and orientation."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.io import savemat

from faceflax.geometry import morphable as mm
from faceflax.geometry.obj import read_positions

# Synthetic BFM: a 12 x 12 grid on a spherical cap facing +z (micrometres), with the real
# component counts; the 3DDFA subsets are permuted so that index mix-ups show.
N_FULL, N_EXP, N_FRONT = 144, 120, 90


def face_normals(verts, faces):
    v0, v1, v2 = (verts[faces[:, k]] for k in range(3))
    return np.cross(v1 - v0, v2 - v0)


def outward_fraction(verts, faces):
    """Fraction of faces whose normal points away from the vertex centroid."""
    centres = verts[faces].mean(axis=1) - verts.mean(axis=0)
    return np.mean(np.sum(face_normals(verts, faces) * centres, axis=1) > 0)


def vertex_uv_v(model, vertex):
    """Image-convention v of one vertex (its first UV corner)."""
    row, corner = np.argwhere(model.faces == vertex)[0]
    return model.uvs[model.uv_faces[row, corner], 1]


def transfer_bfm09(folder):
    """NumPy transcription of Deep3DFaceRecon's ``util/load_mats.py`` ``transferBFM09``:
    the reference that writes ``BFM_model_front.mat`` from the BFM09 + 3DDFA files."""
    from scipy.io import loadmat

    bfm = loadmat(folder / "01_MorphableModel.mat")
    raw = (folder / "Exp_Pca.bin").read_bytes()
    dim = int(np.frombuffer(raw[:4], np.int32)[0])
    values = np.frombuffer(raw[4:], np.float32)
    exp_pc = values[3 * N_EXP :].reshape(dim, -1).T
    exp_ev = np.loadtxt(folder / "std_exp.txt")
    id_base = (bfm["shapePC"] * bfm["shapeEV"].reshape(-1, 199) / 1e5)[:, :80]
    ex_base = (exp_pc * exp_ev.reshape(-1, 79) / 1e5)[:, :64]
    tex_base = (bfm["texPC"] * bfm["texEV"].reshape(-1, 199))[:, :80]
    index_exp = loadmat(folder / "BFM_front_idx.mat")["idx"].astype(np.int32) - 1
    index_shape = loadmat(folder / "BFM_exp_idx.mat")["trimIndex"].astype(np.int32) - 1
    index_shape = index_shape[index_exp]

    def select(columns, index):
        k = columns.shape[1]
        return columns.reshape(-1, 3, k)[index.reshape(-1)].reshape(-1, k)

    info = loadmat(folder / "facemodel_info.mat")
    front = {
        "meanshape": select(bfm["shapeMU"] / 1e5, index_shape).reshape(1, -1),
        "meantex": select(bfm["texMU"], index_shape).reshape(1, -1),
        "idBase": select(id_base, index_shape),
        "exBase": select(ex_base, index_exp),
        "texBase": select(tex_base, index_shape),
    }
    # tri, point_buf, tri_mask2, keypoints, frontmask2_idx, skinmask: copied as they are.
    front.update({k: v for k, v in info.items() if not k.startswith("__")})
    savemat(folder / "BFM_model_front.mat", front)
    return front


@pytest.fixture(scope="module")
def bfm_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bfm")
    rng = np.random.default_rng(0)
    theta, phi = np.meshgrid(np.linspace(-1.0, 1.0, 12), np.linspace(-0.9, 0.9, 12))
    radius = 9e4
    verts = np.stack(
        [
            radius * np.cos(phi) * np.sin(theta),
            radius * np.sin(phi),
            radius * np.cos(phi) * np.cos(theta) - 5e4,
        ],
        axis=-1,
    ).reshape(-1, 3)
    tris = []
    for a in [r * 12 + c for r in range(11) for c in range(11)]:
        # Cell corners a, a + 1 (+x), a + 13, a + 12 (+y), listed clockwise from the front:
        # inward winding, which the importer must flip.
        tris += [(a, a + 12, a + 13), (a, a + 13, a + 1)]
    tl = np.asarray(tris, np.float64) + 1
    savemat(
        folder / "01_MorphableModel.mat",
        {
            "shapeMU": verts.reshape(-1, 1).astype(np.float32),
            "shapePC": rng.normal(0, 0.1, (3 * N_FULL, 199)).astype(np.float32),
            "shapeEV": np.geomspace(1e5, 1e3, 199).reshape(-1, 1).astype(np.float32),
            "texMU": rng.uniform(60, 200, (3 * N_FULL, 1)).astype(np.float32),
            "texPC": rng.normal(0, 0.1, (3 * N_FULL, 199)).astype(np.float32),
            "texEV": np.geomspace(100, 1, 199).reshape(-1, 1).astype(np.float32),
            "tl": tl,
        },
    )
    trim = rng.permutation(rng.choice(N_FULL, N_EXP, replace=False))
    savemat(folder / "BFM_exp_idx.mat", {"trimIndex": (trim + 1.0).reshape(-1, 1)})
    front = rng.permutation(rng.choice(N_EXP, N_FRONT, replace=False))
    savemat(folder / "BFM_front_idx.mat", {"idx": (front + 1.0).reshape(-1, 1)})
    exp_mean = rng.normal(0, 1, 3 * N_EXP).astype(np.float32)
    exp_pcs = rng.normal(0, 0.1, (79, 3 * N_EXP)).astype(np.float32)
    with open(folder / "Exp_Pca.bin", "wb") as f:
        f.write(np.int32(79).tobytes() + exp_mean.tobytes() + exp_pcs.tobytes())
    np.savetxt(folder / "std_exp.txt", np.geomspace(5e4, 5e2, 79))

    # facemodel_info.mat: front-face triangles (tl cropped to the front vertices), keypoints
    # and masks, 1-based doubles.
    front_full = trim[front]
    new_index = np.full(N_FULL, -1)
    new_index[front_full] = np.arange(N_FRONT)
    tri = new_index[tl.astype(int) - 1]
    tri = tri[np.all(tri >= 0, axis=1)]
    frontmask = np.sort(rng.choice(N_FRONT, 60, replace=False))
    info = {
        "tri": tri + 1.0,
        "keypoints": (rng.choice(N_FRONT, 68, replace=False) + 1.0).reshape(1, 68),
        "skinmask": (rng.uniform(size=(1, N_FRONT)) > 0.3).astype(np.float64),
        "frontmask2_idx": (frontmask + 1.0).reshape(-1, 1),
        "point_buf": rng.integers(1, len(tri) + 1, (N_FRONT, 8)).astype(np.float64),
        "tri_mask2": tri[np.all(np.isin(tri, frontmask), axis=1)] + 1.0,
    }
    savemat(folder / "facemodel_info.mat", info)
    uv = rng.uniform(0, 1, (N_EXP, 2))
    savemat(folder / "BFM_UV.mat", {"UV": uv})
    front_mat = transfer_bfm09(folder)
    return {
        "folder": folder,
        "tl": tl,
        "trim": trim,
        "front": front,
        "uv": uv,
        "front_mat": front_mat,
    }


def test_bfm2009_shape_albedo_units_and_triangles(bfm_files):
    folder = bfm_files["folder"]
    model = mm.from_bfm2009(folder / "01_MorphableModel.mat")
    ranks = (model.id_rank, model.exp_rank, model.albedo_rank)
    assert model.num_vertices == N_FULL and ranks == (199, 0, 199)
    from scipy.io import loadmat

    bfm = loadmat(folder / "01_MorphableModel.mat")
    rng = np.random.default_rng(1)
    alpha, gamma = rng.normal(size=199), rng.normal(size=199)
    # Direct evaluation in the file's units: micrometres -> / 1e5, recentred; 0..255 -> / 255.
    mu, pcs, ev = bfm["shapeMU"][:, 0], bfm["shapePC"], bfm["shapeEV"][:, 0]
    direct = (mu + pcs @ (ev * alpha)) / 1e5
    centre = (mu / 1e5).reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(mm.shape(model, alpha), direct.reshape(-1, 3) - centre, rtol=1e-4, atol=1e-5)
    colour = (bfm["texMU"][:, 0] + bfm["texPC"] @ (bfm["texEV"][:, 0] * gamma)) / 255
    colour = colour.reshape(-1, 3)
    np.testing.assert_allclose(mm.albedo(model, gamma), colour, atol=1e-4)
    assert 0.5 < np.ptp(model.mean[:, 0]) < 2.0  # a ~1.5 dm wide cap in BFM units
    # The synthetic tl is wound inward (clockwise from outside): flipped to outward, 0-based.
    tl = bfm_files["tl"].astype(np.int32) - 1
    np.testing.assert_array_equal(model.faces, tl[:, ::-1])
    assert outward_fraction(model.mean, model.faces) == 1.0
    assert np.all(face_normals(model.mean, model.faces)[:, 2] > 0)
    assert model.landmarks.shape == (0,) and model.regions["face"].all()
    np.testing.assert_array_equal(model.uv_faces, model.faces)


def test_bfm2009_cylindrical_uvs_keep_orientation(bfm_files):
    model = mm.from_bfm2009(bfm_files["folder"] / "01_MorphableModel.mat")
    uv = model.uvs
    assert uv.min() >= 0 and uv.max() <= 1 and np.isclose(np.ptp(uv, axis=0).max(), 1)
    # On the 12 x 12 grid (rows: +y, columns: +x), u grows to the subject's left (image
    # right) and v downward (image convention).
    grid = uv.reshape(12, 12, 2)
    assert np.all(np.diff(grid[..., 0], axis=1) > 0)
    assert np.all(np.diff(grid[..., 1], axis=0) < 0)
    # No folded UV triangle: outward (CCW from the front) triangles are all clockwise in
    # (u, v-down), i.e. the unwrap is a consistent, fold-free map.
    e1 = uv[model.uv_faces[:, 1]] - uv[model.uv_faces[:, 0]]
    e2 = uv[model.uv_faces[:, 2]] - uv[model.uv_faces[:, 0]]
    assert np.all(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0] < 0)


def test_bfm2009_with_expressions_and_front_equals_bfm_front(bfm_files, tmp_path):
    folder = bfm_files["folder"]
    files = {
        "exp_pca_path": folder / "Exp_Pca.bin",
        "exp_std_path": folder / "std_exp.txt",
    }
    with pytest.raises(ValueError, match="BFM_exp_idx.mat"):
        mm.from_bfm2009(folder / "01_MorphableModel.mat", **files)
    truncated = tmp_path / "Exp_Pca.bin"
    truncated.write_bytes((folder / "Exp_Pca.bin").read_bytes()[:-4])
    with pytest.raises(ValueError, match="not an Exp_Pca.bin"):
        mm.read_exp_pca(truncated, files["exp_std_path"])
    trimmed = mm.from_bfm2009(
        folder / "01_MorphableModel.mat",
        **files,
        exp_idx_path=folder / "BFM_exp_idx.mat",
    )
    assert (trimmed.num_vertices, trimmed.exp_rank) == (N_EXP, 79)
    # Expression basis = Exp_Pca components * std / 1e5 on the 3DDFA subset.
    raw = np.frombuffer((folder / "Exp_Pca.bin").read_bytes()[4:], np.float32)
    pcs = raw[3 * N_EXP :].reshape(79, N_EXP, 3)
    std = np.loadtxt(folder / "std_exp.txt")
    expected = pcs * std[:, None, None] / 1e5
    np.testing.assert_allclose(trimmed.exp_basis, expected, rtol=1e-6)
    full = mm.from_bfm2009(folder / "01_MorphableModel.mat")
    expected = full.id_basis[:, bfm_files["trim"]]
    np.testing.assert_allclose(trimmed.id_basis, expected, rtol=1e-6)

    ours = mm.from_bfm2009(
        folder / "01_MorphableModel.mat",
        **files,
        exp_idx_path=folder / "BFM_exp_idx.mat",
        front_idx_path=folder / "BFM_front_idx.mat",
        info_path=folder / "facemodel_info.mat",
    )
    ours = mm.resize_ranks(ours, 80, 64, 80)
    reference = mm.from_bfm_front(folder / "BFM_model_front.mat")
    for key in ("mean", "id_basis", "exp_basis", "albedo_mean", "albedo_basis", "uvs"):
        np.testing.assert_allclose(
            getattr(ours, key),
            getattr(reference, key),
            rtol=1e-5,
            atol=1e-6,
            err_msg=key,
        )
    for key in ("faces", "uv_faces", "landmarks"):
        np.testing.assert_array_equal(getattr(ours, key), getattr(reference, key))
    assert ours.regions.keys() == reference.regions.keys() == {"face", "front", "skin"}
    for key in ours.regions:
        np.testing.assert_array_equal(ours.regions[key], reference.regions[key])


def test_bfm_front_matches_deep3dfacerecon(bfm_files):
    folder, front = bfm_files["folder"], bfm_files["front_mat"]
    model = mm.from_bfm_front(folder / "BFM_model_front.mat")
    ranks = (model.id_rank, model.exp_rank, model.albedo_rank)
    assert model.num_vertices == N_FRONT and ranks == (80, 64, 80)
    # Deep3DFaceRecon ParametricFaceModel(recenter=True).compute_shape / compute_texture.
    rng = np.random.default_rng(2)
    ids, exps, texs = (
        rng.normal(size=(3, 80)),
        rng.normal(size=(3, 64)),
        rng.normal(size=(3, 80)),
    )
    mean = front["meanshape"].reshape(-1, 3)
    mean = (mean - mean.mean(axis=0)).reshape(1, -1)
    expected = ids @ front["idBase"].T + exps @ front["exBase"].T + mean
    np.testing.assert_allclose(mm.shape(model, ids, exps), expected.reshape(3, -1, 3), rtol=1e-4, atol=1e-5)
    colour = (texs @ front["texBase"].T + front["meantex"]) / 255.0
    colour = colour.reshape(3, -1, 3)
    np.testing.assert_allclose(mm.albedo(model, texs), colour, atol=1e-4)
    keypoints = front["keypoints"][0].astype(int) - 1
    np.testing.assert_array_equal(model.landmarks, keypoints)
    assert model.landmarks.dtype == np.int32 and model.faces.dtype == np.int32
    # 0-based triangles of `tri`, flipped to outward winding.
    np.testing.assert_array_equal(model.faces, (front["tri"].astype(int) - 1)[:, ::-1])
    assert outward_fraction(model.mean, model.faces) == 1.0
    assert model.regions["front"].sum() == len(front["frontmask2_idx"])
    assert model.regions["front"][front["frontmask2_idx"][:, 0].astype(int) - 1].all()
    np.testing.assert_array_equal(model.regions["skin"], front["skinmask"][0] > 0)


def test_bfm_uv_file_and_npz_round_trip(bfm_files, tmp_path):
    folder = bfm_files["folder"]
    uvs = mm.load_bfm_uv(folder / "BFM_UV.mat", folder / "BFM_front_idx.mat")
    expected = bfm_files["uv"][bfm_files["front"]]
    expected[:, 1] = 1 - expected[:, 1]  # v up -> image convention
    np.testing.assert_allclose(uvs, expected)
    model = mm.from_bfm_front(folder / "BFM_model_front.mat", uvs=uvs)
    np.testing.assert_array_equal(model.uvs, uvs)
    np.testing.assert_array_equal(model.uv_faces, model.faces)

    mm.save_npz(model, tmp_path / "bfm.npz")
    loaded = mm.load_npz(tmp_path / "bfm.npz")
    assert (loaded.name, loaded.source, loaded.expression_names) == (
        model.name,
        model.source,
        model.expression_names,
    )
    assert list(loaded.regions) == list(model.regions)
    for (path, a), (_, b) in zip(
        jax.tree_util.tree_leaves_with_path(model),
        jax.tree_util.tree_leaves_with_path(loaded),
    ):
        assert a.dtype == b.dtype, path
        np.testing.assert_array_equal(a, b, err_msg=str(path))


def test_shape_is_batched_jit_and_vmap(bfm_files):
    model = mm.from_bfm_front(bfm_files["folder"] / "BFM_model_front.mat")
    rng = np.random.default_rng(3)
    ids = rng.normal(size=(2, 3, 80)).astype(np.float32)
    exps = rng.normal(size=(2, 3, 64)).astype(np.float32)
    loop = np.zeros((2, 3, N_FRONT, 3), np.float32)
    for i, j in np.ndindex(2, 3):
        loop[i, j] = mm.shape(model, ids[i, j], exps[i, j])
    jitted = jax.jit(mm.shape)(model, ids, exps)
    assert jitted.shape == (2, 3, N_FRONT, 3) and jitted.dtype == jnp.float32
    np.testing.assert_allclose(jitted, loop, rtol=1e-5, atol=1e-6)
    mapped = jax.vmap(lambda a, b: mm.shape(model, a, b))(ids[0], exps[0])
    np.testing.assert_allclose(mapped, loop[0], rtol=1e-5, atol=1e-6)
    # Broadcast: one identity, a batch of expressions.
    one_id = np.stack([mm.shape(model, ids[0, 0], e) for e in exps[0]])
    np.testing.assert_allclose(mm.shape(model, ids[0, 0], exps[0]), one_id, atol=1e-6)

    message = r"length 80 \(the identity rank of model 'bfm_front'"
    with pytest.raises(ValueError, match=message):
        mm.shape(model, np.zeros(79), exps[0, 0])
    with pytest.raises(ValueError, match="length 64"):
        jax.jit(mm.shape)(model, ids[0, 0], np.zeros(80))
    with pytest.raises(ValueError, match="length 80"):
        mm.albedo(model, np.zeros((2, 81)))


def test_resize_ranks_pads_and_truncates(bfm_files):
    model = mm.from_bfm_front(bfm_files["folder"] / "BFM_model_front.mat")
    small = mm.resize_ranks(model, 10, 5, 3)
    big = mm.resize_ranks(model, 100, 70)
    assert (small.id_rank, small.exp_rank, small.albedo_rank) == (10, 5, 3)
    assert (big.id_rank, big.exp_rank, big.albedo_rank) == (100, 70, 80)
    rng = np.random.default_rng(4)
    ids, exps = rng.normal(size=100), rng.normal(size=70)
    np.testing.assert_allclose(mm.shape(big, ids, exps), mm.shape(model, ids[:80], exps[:64]), atol=1e-6)
    np.testing.assert_allclose(
        mm.shape(small, ids[:10], exps[:5]),
        mm.shape(model, np.r_[ids[:10], np.zeros(70)], np.r_[exps[:5], np.zeros(59)]),
        atol=1e-6,
    )


# --------------------------------------------------------------------------- asset mirror


@pytest.fixture(scope="module")
def ict(asset_mirror):
    return mm.from_ict(asset_mirror / "ict-facekit")


def check_face_conventions(model, width_range=(1.2, 2.0)):
    """Landmarks, orientation, units and UV conventions of a frontal face model."""
    lm = model.mean[model.landmarks]
    assert np.argmax(lm[:, 2]) == 30  # nose tip nearest the camera (+z)
    assert np.argmin(lm[:, 1]) == 8  # chin lowest (+y up)
    assert lm[36, 0] < 0 < lm[45, 0]  # subject's right eye at -x, left at +x
    assert width_range[0] < np.ptp(model.mean[:, 0]) < width_range[1]
    face = model.mean[model.regions["face"]]
    np.testing.assert_allclose(face.mean(axis=0), 0, atol=1e-5)  # recentred
    assert model.uvs.min() >= 0 and model.uvs.max() <= 1
    # Image-convention v: brow above nose above chin in the texture.
    brow, nose, chin = (vertex_uv_v(model, model.landmarks[i]) for i in (19, 30, 8))
    assert brow < nose < chin
    # Outward normals, with robust statistics for an open surface (eyelids, nostrils and
    # the lips fold inward locally): a consistent winding (no directed edge twice), most
    # normals pointing away from the centroid, and the central band of the face facing +z
    # (area-weighted; about 0.6 for ICT, 0.8 for MediaPipe, negative if flipped).
    edges = np.concatenate([model.faces[:, [k, (k + 1) % 3]] for k in range(3)])
    assert len(np.unique(edges, axis=0)) == len(edges)
    assert outward_fraction(model.mean, model.faces) > 0.75
    normals = face_normals(model.mean, model.faces)  # length = 2 * area
    centres = model.mean[model.faces].mean(axis=1)
    band = np.abs(centres[:, 0]) < 0.3 * np.ptp(model.mean[:, 0])
    assert normals[band, 2].sum() > 0.4 * np.linalg.norm(normals[band], axis=1).sum()


def test_ict_face_model(ict, asset_mirror):
    folder = asset_mirror / "ict-facekit"
    names = json.loads((folder / "vertex_indices.json").read_text())["expressions"]
    assert ict.num_vertices == 9409 and ict.faces.shape == (18460, 3)  # 9230 quads
    assert ict.uv_faces.shape == ict.faces.shape
    assert ict.uv_faces.max() == len(ict.uvs) - 1  # unused UVs dropped
    assert (ict.id_rank, ict.exp_rank, ict.albedo_mean) == (20, 12, None)
    assert len(ict.expression_names) == 12 and set(ict.expression_names) <= set(names)
    assert "jawOpen" in ict.expression_names and "mouthSmile_L" in ict.expression_names
    check_face_conventions(ict)
    # Identity basis: (identity_i - neutral) in cm * 0.1.
    neutral = read_positions(folder / "generic_neutral_mesh.obj")[:9409]
    identity = read_positions(folder / "identity007.obj")[:9409]
    np.testing.assert_allclose(ict.id_basis[7], (identity - neutral) * 0.1, atol=1e-6)
    # jawOpen lowers the chin.
    jaw = np.eye(12)[ict.expression_names.index("jawOpen")]
    opened = np.asarray(mm.shape(ict, np.zeros(20), jaw))
    assert opened[ict.landmarks[8], 1] < ict.mean[ict.landmarks[8], 1] - 0.05


def test_ict_face_and_head_region(ict, asset_mirror):
    model = mm.from_ict(asset_mirror / "ict-facekit", region="face+head")
    assert model.num_vertices == 11248 and model.faces.shape == (22288, 3)
    assert model.regions["head"].sum() == 11248 - 9409
    assert model.uvs.min() >= 0 and model.uvs.max() <= 1
    # UDIM tiles side by side: the face polygons come first (file order) with their face-
    # model UVs at half width; head and neck polygons use the right half.
    n_face = len(ict.faces)
    np.testing.assert_array_equal(model.faces[:n_face], ict.faces)
    np.testing.assert_allclose(model.uvs[model.uv_faces[:n_face]], ict.uvs[ict.uv_faces] * [0.5, 1], atol=1e-6)
    assert model.uvs[model.uv_faces[n_face:], 0].min() >= 0.5
    np.testing.assert_allclose(model.mean[:9409].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(model.mean[:9409], ict.mean, atol=1e-6)


def test_ict_identity_files_must_be_contiguous(asset_mirror, tmp_path):
    source = asset_mirror / "ict-facekit"
    for name in ("generic_neutral_mesh.obj", "vertex_indices.json"):
        (tmp_path / name).symlink_to(source / name)
    for i in (0, 2):
        (tmp_path / f"identity{i:03d}.obj").symlink_to(source / f"identity{i:03d}.obj")
    with pytest.raises(ValueError, match="missing identity001.obj"):
        mm.from_ict(tmp_path)
    with pytest.raises(ValueError, match="region must be one of"):
        mm.from_ict(tmp_path, region="eyes")


def test_mediapipe_canonical_face(asset_mirror, tmp_path):
    path = asset_mirror / "mediapipe" / "canonical_face_model.obj"
    model = mm.from_obj(path, landmarks=mm.MEDIAPIPE_IBUG68)
    assert model.num_vertices == 468 and model.faces.shape == (898, 3)
    assert model.id_basis.shape == (0, 468, 3) and model.exp_basis.shape == (0, 468, 3)
    assert model.name == "canonical_face_model" and model.albedo_basis is None
    check_face_conventions(model)
    np.testing.assert_allclose(mm.shape(model), model.mean)
    np.testing.assert_allclose(mm.shape(model, np.zeros((4, 0))), np.broadcast_to(model.mean, (4, 468, 3)))
    assert mm.from_obj(path).landmarks.shape == (0,)
    with pytest.raises(ValueError, match="no albedo"):
        mm.albedo(model)

    mm.save_npz(model, tmp_path / "mediapipe.npz")
    loaded = mm.load_npz(tmp_path / "mediapipe.npz")
    assert loaded.albedo_mean is None and loaded.albedo_basis is None
    np.testing.assert_array_equal(loaded.uv_faces, model.uv_faces)
    np.testing.assert_array_equal(loaded.landmarks, mm.MEDIAPIPE_IBUG68)


def test_from_obj_needs_uvs(tmp_path):
    path = tmp_path / "plain.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(ValueError, match="texture coordinates"):
        mm.from_obj(path)


def test_load_model_resolves_names_and_bfm_folders(bfm_files, asset_mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFLAX_ASSETS", str(asset_mirror))
    assert mm.load_model("mediapipe").num_vertices == 468
    folder = bfm_files["folder"]
    front = mm.load_model(f"bfm:{folder}")
    np.testing.assert_array_equal(front.mean, mm.from_bfm_front(folder / "BFM_model_front.mat").mean)
    full_only = tmp_path / "bfm"
    full_only.mkdir()
    (full_only / "01_MorphableModel.mat").write_bytes((folder / "01_MorphableModel.mat").read_bytes())
    full = mm.load_model(f"bfm:{full_only}")
    assert (full.id_rank, full.exp_rank) == (199, 0)
    with pytest.raises(ValueError, match="no Basel Face Model at .*Register at"):
        mm.load_model(f"bfm:{tmp_path / 'nothing'}")
    with pytest.raises(ValueError, match="unknown morphable model 'bfm2017'"):
        mm.load_model("bfm2017")
