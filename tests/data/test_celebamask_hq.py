"""Tests for the CelebAMask-HQ TFDS builder on a tiny manual_dir in the real CelebAMask-HQ layout."""

import pickle
import shutil

import cv2
import numpy as np
import pytest

from faceflax.data import celebamask_hq

# Written out independently of the module: face-parsing.PyTorch's class order, id = position.
PARSING_ORDER = [
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
]  # fmt: skip
# CelebA-HQ index -> (CelebA file, partition code); indices span several mask folders (k = idx // 2000).
MAPPING = {
    0: ("119614.jpg", 0),
    1: ("099095.jpg", 2),
    2001: ("200184.jpg", 0),
    4002: ("000004.jpg", 1),
    6003: ("162771.jpg", 0),
    29999: ("182638.jpg", 2),
}
SPLIT_IDS = {
    split: sorted(i for i, (_, code) in MAPPING.items() if code == c)
    for c, split in enumerate(("train", "validation", "test"))
}
IMAGE_SIZE = 512  # stands in for 1024; the 256 config is then an exact 2x2 area average.
MASK_SIZE = 128  # stands in for 512; the configs are then exact nearest-neighbour upsamplings.
# part -> (row0, row1, col0, col1) in mask pixels; overlaps exercise the paint order.
BOXES = {
    "skin": (20, 110, 20, 108),
    "nose": (50, 70, 55, 70),
    "l_eye": (40, 48, 30, 45),
    "eye_g": (38, 50, 25, 50),
    "hair": (5, 40, 10, 118),
    "hat": (0, 15, 30, 90),
    "neck": (100, 128, 40, 90),
    "cloth": (115, 128, 0, 128),
}


def parts_of(idx):
    """Different subsets of parts per image (a part absent from a face has no file)."""
    names = list(BOXES)
    return names if idx % 2 == 0 else names[: 3 + idx % 4]


def make_manual_dir(root):
    hq = root / "CelebAMask-HQ"
    (hq / "CelebA-HQ-img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    for k, idx in enumerate(MAPPING):
        base = np.stack([(xx * (k + 1)) % 256, (yy + 30 * k) % 256, (xx + yy) // 4], -1)
        noise = rng.integers(-15, 15, base.shape)
        cv2.imwrite(str(hq / "CelebA-HQ-img" / f"{idx}.jpg"), np.clip(base + noise, 0, 255).astype(np.uint8))
        mask_dir = hq / "CelebAMask-HQ-mask-anno" / str(idx // 2000)
        mask_dir.mkdir(parents=True, exist_ok=True)
        for part in parts_of(idx):
            r0, r1, c0, c1 = BOXES[part]
            mask = np.zeros((MASK_SIZE, MASK_SIZE), np.uint8)
            mask[r0 + k : r1, c0 : c1 - k] = 255
            if part == "hair":  # some official masks are 3-channel PNGs.
                mask = np.repeat(mask[..., None], 3, -1)
            cv2.imwrite(str(mask_dir / f"{idx:05d}_{part}.png"), mask)
    lines = ["idx         orig_idx    orig_file   \n"]
    lines += [f"{idx:<12}{int(name[:-4]) - 1:<12}{name}\n" for idx, (name, _) in MAPPING.items()]
    (hq / "CelebA-HQ-to-CelebA-mapping.txt").write_text("".join(lines))
    partition = [f"{name} {code}\n" for name, code in sorted(MAPPING.values())] + ["000001.jpg 0\n"]
    (root / "list_eval_partition.txt").write_text("".join(partition))
    return root


def reference_parsing(manual_dir, idx, resolution):
    """Paints the part masks in PARSING_ORDER and upsamples by pixel repetition."""
    parsing = np.zeros((MASK_SIZE, MASK_SIZE), np.uint8)
    folder = manual_dir / "CelebAMask-HQ" / "CelebAMask-HQ-mask-anno" / str(idx // 2000)
    for class_id, part in enumerate(PARSING_ORDER):
        path = folder / f"{idx:05d}_{part}.png"
        if path.exists():
            parsing[cv2.imread(str(path))[..., 0] == 255] = class_id
    factor = resolution // MASK_SIZE
    return np.repeat(np.repeat(parsing, factor, 0), factor, 1)


def reference_image(manual_dir, idx, resolution):
    rgb = cv2.imread(str(manual_dir / "CelebAMask-HQ" / "CelebA-HQ-img" / f"{idx}.jpg"))[..., ::-1].astype(float)
    factor = IMAGE_SIZE // resolution
    return rgb.reshape(resolution, factor, resolution, factor, 3).mean((1, 3))


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("celebamask_hq")
    return make_manual_dir(root / "manual"), str(root / "tfds")


def test_splits_images_and_parsing_maps(dirs):
    manual_dir, data_dir = dirs
    for split, ids in SPLIT_IDS.items():
        source = celebamask_hq.load_celebamask_hq(split, 256, data_dir, str(manual_dir))
        assert len(source) == len(ids)
        seen = []
        for i in range(len(source)):
            example = source[i]
            idx = int(example["id"].decode().removesuffix(".jpg"))
            assert example["image"].dtype == np.uint8 and example["image"].shape == (256, 256, 3)
            assert example["parsing"].dtype == np.uint8 and example["parsing"].shape == (256, 256)
            assert np.abs(example["image"] - reference_image(manual_dir, idx, 256)).max() <= 1
            np.testing.assert_array_equal(example["parsing"], reference_parsing(manual_dir, idx, 256))
            seen.append(idx)
        assert sorted(seen) == ids


def test_paint_order_and_512_config(dirs):
    manual_dir, data_dir = dirs
    source = celebamask_hq.load_celebamask_hq("train", 512, data_dir, str(manual_dir))
    example = next(source[i] for i in range(len(source)) if source[i]["id"] == b"0.jpg")
    parsing = example["parsing"]
    assert example["image"].shape == (512, 512, 3) and parsing.shape == (512, 512)
    np.testing.assert_array_equal(parsing, reference_parsing(manual_dir, 0, 512))

    def at(row, col):  # mask pixel -> 512 map pixel
        return parsing[4 * row, 4 * col]

    assert at(60, 60) == PARSING_ORDER.index("nose")  # nose over skin
    assert at(44, 35) == PARSING_ORDER.index("eye_g")  # eye_g (6) over l_eye (4)
    assert at(10, 50) == PARSING_ORDER.index("hat")  # hat over hair
    assert at(30, 25) == PARSING_ORDER.index("hair")  # hair over skin
    assert at(120, 60) == PARSING_ORDER.index("cloth")  # cloth over neck
    assert at(2, 2) == 0
    assert list(celebamask_hq.CLASSES) == PARSING_ORDER


def test_prepared_dataset_needs_no_manual_dir_and_pickles(dirs):
    manual_dir, data_dir = dirs
    celebamask_hq.load_celebamask_hq("test", 256, data_dir, str(manual_dir))
    source = celebamask_hq.load_celebamask_hq("test", 256, data_dir)
    clone = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(clone[0]["parsing"], source[0]["parsing"])


def test_combine_masks_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown CelebAMask-HQ parts"):
        celebamask_hq.combine_masks({"beard": np.zeros((4, 4), np.uint8)})
    with pytest.raises(ValueError, match="share one"):
        celebamask_hq.combine_masks({"skin": np.zeros((4, 4), np.uint8), "hair": np.zeros((4, 5), np.uint8)})


def test_missing_manual_dir(tmp_path):
    with pytest.raises(ValueError, match="does not exist") as info:
        celebamask_hq.load_celebamask_hq("train", 256, str(tmp_path / "tfds"), str(tmp_path / "nope"))
    message = str(info.value)
    assert "manual_dir/CelebAMask-HQ/CelebA-HQ-img/0.jpg" in message
    assert "manual_dir/CelebAMask-HQ/CelebAMask-HQ-mask-anno/{0..14}/{idx:05d}_{part}.png" in message
    assert "github.com/switchablenorms/CelebAMask-HQ" in message
    with pytest.raises(ValueError, match="no manual_dir was given"):
        celebamask_hq.load_celebamask_hq("train", 256, str(tmp_path / "tfds"))


@pytest.mark.parametrize(
    "remove, message",
    [
        ("CelebAMask-HQ/CelebA-HQ-img", "lacks CelebAMask-HQ/CelebA-HQ-img/"),
        ("CelebAMask-HQ/CelebAMask-HQ-mask-anno", "lacks CelebAMask-HQ/CelebAMask-HQ-mask-anno/"),
        ("CelebAMask-HQ/CelebA-HQ-to-CelebA-mapping.txt", "lacks CelebAMask-HQ/CelebA-HQ-to-CelebA-mapping.txt"),
        ("list_eval_partition.txt", "lacks list_eval_partition.txt"),
        ("CelebAMask-HQ/CelebAMask-HQ-mask-anno/2", r"mask folder .*/2/ \(for image 4002\) is missing"),
        ("CelebAMask-HQ/CelebA-HQ-img/6003.jpg", r"6003\.jpg is missing or unreadable"),
    ],
)
def test_missing_parts_of_the_layout(tmp_path, remove, message):
    manual_dir = make_manual_dir(tmp_path / "manual")
    path = manual_dir / remove
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(ValueError, match=message):
        celebamask_hq.load_celebamask_hq("train", 256, str(tmp_path / "tfds"), str(manual_dir))


def test_malformed_mapping_and_unlisted_file(tmp_path):
    manual_dir = make_manual_dir(tmp_path / "manual")
    mapping = manual_dir / "CelebAMask-HQ" / "CelebA-HQ-to-CelebA-mapping.txt"
    mapping.write_text("idx orig_idx orig_file\n0 119613\n")
    with pytest.raises(ValueError, match="mapping.txt:2: expected"):
        celebamask_hq.load_celebamask_hq("train", 256, str(tmp_path / "tfds"), str(manual_dir))
    mapping.write_text("idx orig_idx orig_file\n0 5 000006.jpg\n")
    with pytest.raises(ValueError, match="maps to 000006.jpg, which list_eval_partition.txt does not list"):
        celebamask_hq.load_celebamask_hq("train", 256, str(tmp_path / "tfds"), str(manual_dir))


def test_bad_split_and_resolution(tmp_path):
    with pytest.raises(ValueError, match="valid splits: train, validation, test"):
        celebamask_hq.load_celebamask_hq("val", 256, str(tmp_path))
    with pytest.raises(ValueError, match="valid resolutions: 256, 512"):
        celebamask_hq.load_celebamask_hq("train", 1024, str(tmp_path))
