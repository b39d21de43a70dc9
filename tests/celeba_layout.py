"""A tiny CelebA manual download in the real layout, for builder and config tests."""

import cv2
import numpy as np

# name -> partition code (0=train, 1=validation, 2=test); uneven split sizes on purpose.
PARTITION = {
    "000001.jpg": 0,
    "000002.jpg": 1,
    "000003.jpg": 2,
    "000004.jpg": 0,
    "000005.jpg": 0,
    "000006.jpg": 2,
    "000007.jpg": 1,
    "000008.jpg": 2,
    "000009.jpg": 0,
}
SPLIT_NAMES = {
    split: sorted(n for n, code in PARTITION.items() if code == i)
    for i, split in enumerate(("train", "validation", "test"))
}


def make_manual_dir(root):
    """Writes 9 distinct 178x218 JPEGs and list_eval_partition.txt under ``root``."""
    image_dir = root / "img_align_celeba"
    image_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:218, 0:178]
    for k, name in enumerate(PARTITION):
        # Smooth per-image gradients plus noise: distinct, face-photo-like JPEG content.
        base = np.stack([(xx * (k + 1)) % 256, (yy * 2 + 20 * k) % 256, (xx + yy) // 2], -1)
        noise = rng.integers(-20, 20, base.shape)
        cv2.imwrite(str(image_dir / name), np.clip(base + noise, 0, 255).astype(np.uint8))
    lines = [f"{name} {code}\n" for name, code in PARTITION.items()]
    (root / "list_eval_partition.txt").write_text("".join(lines))
    return root
