"""``faceflax prepare``: pseudo ground truth per photo, resumable, failures reported (ICT from the asset mirror)."""

import json

import cv2
import numpy as np
import pytest

from faceflax import cli
from faceflax.data import images
from faceflax.data.prepare import PreparedFaces


def test_prepare_writes_targets_resumes_and_reports_failures(asset_mirror, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(
        str(photos / "astronaut.png"),
        cv2.cvtColor(images.to_uint8(images.default_photo("astronaut")), cv2.COLOR_RGB2BGR),
    )
    (photos / "notes.png").write_text("not an image")
    out = tmp_path / "derived"
    args = ["prepare", str(photos), "--out", str(out), "--uv-size", "512", "--workers", "1", "--no-progress"]
    assert cli.main(args) == 1
    assert "notes.png" in capsys.readouterr().err
    assert list(json.loads((out / "failures.json").read_text())) == [f"'{photos / 'notes.png'}'"]
    assert sorted(p.name for p in out.glob("*.npz")) == ["astronaut.npz"]  # no partial files left
    with np.load(out / "astronaut.npz") as target:
        assert target["image"].shape == (512, 512, 3) and target["image"].dtype == np.uint8
        assert target["landmarks"].shape == (68, 2) and target["id_coeffs"].shape == (20,)
        mask = target["uv_mask"]
        assert mask.dtype == bool and 0.1 < mask.mean() < 0.6
        np.testing.assert_array_equal(target["uv_bl"][mask], target["uv_gt"][mask])  # UV_bl keeps UV_gt's texels
        assert target["sampling_map"].shape == (512, 512, 2) and target["face_mask"].any()
        # S_gt points each visible texel at the square pixel whose colour it holds.
        square = target["image"].astype(np.float32)
        xy = target["sampling_map"][mask] * 512 - 0.5
        pixels = square[
            np.clip(np.round(xy[:, 1]).astype(int), 0, 511), np.clip(np.round(xy[:, 0]).astype(int), 0, 511)
        ]
        assert np.abs(pixels - target["uv_gt"][mask].astype(np.float32)).mean() < 12
    assert cli.main(args) == 1
    assert "1 already there" in capsys.readouterr().out
    source = PreparedFaces(out)
    assert len(source) == 1 and source[0]["uv_gt"].shape == (512, 512, 3)
    with pytest.raises(ValueError, match="no prepared faces"):
        PreparedFaces(photos)
