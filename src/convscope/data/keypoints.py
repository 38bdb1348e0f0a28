"""Facial keypoint names, the iBUG 68 → Kaggle 15 mapping, and left/right mirroring.

Convention (Kaggle's): "left" and "right" are the *subject's* left and right. On a frontal
face the subject's left eye appears on the image's right side, at larger x. Checked on the
real faces of ``faces68_96.npz``: the mean x of iBUG points 42–47 (``left_eye_*``) is 56.6
and that of points 36–41 (``right_eye_*``) is 39.5 on the 96-pixel-wide crops; Kaggle's
``training.csv`` has mean ``left_eye_center_x`` ≈ 66 and ``right_eye_center_x`` ≈ 30.

The iBUG 300-W 68-point layout (0-based): jaw 0–16 (from the image's left ear to its right),
subject's right eyebrow 17–21 (outer → inner), left eyebrow 22–26 (inner → outer), nose bridge
27–30 (30 = tip), lower nose 31–35, right eye 36–41 (36 outer corner, 39 inner corner), left
eye 42–47 (42 inner, 45 outer), outer lips 48–59 (48 and 54 the mouth corners, 51 top and 57
bottom centre), inner lips 60–67.
"""

from __future__ import annotations

import numpy as np

from convscope.errors import ConfigError, ShapeError


def _ibug68_names() -> tuple[str, ...]:
    jaw = [f"right_jaw_{i}" for i in range(8)] + ["chin"] + [f"left_jaw_{i}" for i in range(7, -1, -1)]
    brows = [f"right_eyebrow_{i}" for i in range(5)] + [f"left_eyebrow_{i}" for i in range(4, -1, -1)]
    nose = ["nose_bridge_0", "nose_bridge_1", "nose_bridge_2", "nose_tip",
            "right_nostril_0", "right_nostril_1", "nose_base", "left_nostril_1", "left_nostril_0"]
    eye_parts = ["outer_corner", "upper_outer", "upper_inner", "inner_corner",
                 "lower_inner", "lower_outer"]
    right_eye = [f"right_eye_{p}" for p in eye_parts]
    left_eye = [f"left_eye_{eye_parts[i]}" for i in (3, 2, 1, 0, 5, 4)]
    outer = ["mouth_right_corner", "upper_lip_outer_right_1", "upper_lip_outer_right_0",
             "upper_lip_outer_center", "upper_lip_outer_left_0", "upper_lip_outer_left_1",
             "mouth_left_corner", "lower_lip_outer_left_1", "lower_lip_outer_left_0",
             "lower_lip_outer_center", "lower_lip_outer_right_0", "lower_lip_outer_right_1"]
    inner = ["mouth_inner_right_corner", "upper_lip_inner_right", "upper_lip_inner_center",
             "upper_lip_inner_left", "mouth_inner_left_corner", "lower_lip_inner_left",
             "lower_lip_inner_center", "lower_lip_inner_right"]
    return tuple(jaw + brows + nose + right_eye + left_eye + outer + inner)


IBUG68_NAMES: tuple[str, ...] = _ibug68_names()
"""Names of the 68 iBUG landmarks, with the subject's left/right (see the module docstring)."""

KAGGLE15_NAMES: tuple[str, ...] = (
    "left_eye_center", "right_eye_center",
    "left_eye_inner_corner", "left_eye_outer_corner",
    "right_eye_inner_corner", "right_eye_outer_corner",
    "left_eyebrow_inner_end", "left_eyebrow_outer_end",
    "right_eyebrow_inner_end", "right_eyebrow_outer_end",
    "nose_tip",
    "mouth_left_corner", "mouth_right_corner",
    "mouth_center_top_lip", "mouth_center_bottom_lip",
)
"""The 15 keypoints of Kaggle's Facial Keypoints Detection, in its column order."""

# Kaggle keypoint ← iBUG indices averaged (one index: the point itself).
_KAGGLE_FROM_IBUG: dict[str, tuple[int, ...]] = {
    "left_eye_center": (42, 43, 44, 45, 46, 47),
    "right_eye_center": (36, 37, 38, 39, 40, 41),
    "left_eye_inner_corner": (42,),
    "left_eye_outer_corner": (45,),
    "right_eye_inner_corner": (39,),
    "right_eye_outer_corner": (36,),
    "left_eyebrow_inner_end": (22,),
    "left_eyebrow_outer_end": (26,),
    "right_eyebrow_inner_end": (21,),
    "right_eyebrow_outer_end": (17,),
    "nose_tip": (30,),
    "mouth_left_corner": (54,),
    "mouth_right_corner": (48,),
    "mouth_center_top_lip": (51,),
    "mouth_center_bottom_lip": (57,),
}


def kaggle15_from_ibug68(points: np.ndarray) -> np.ndarray:
    """The 15 Kaggle keypoints from iBUG 68 landmarks: N×68×2 → N×15×2 (order of KAGGLE15_NAMES).

    Eye centres are the mean of each eye's six points; the other 13 are single landmarks
    (eye corners 36/39/42/45, eyebrow ends 17/21/22/26, nose tip 30, mouth corners 48/54,
    outer-lip centres 51 top and 57 bottom). A NaN landmark gives a NaN keypoint.
    """
    points = np.asarray(points)
    if points.ndim != 3 or points.shape[1:] != (68, 2):
        raise ShapeError(f"kaggle15_from_ibug68: expected N×68×2 landmarks, got {points.shape}")
    return np.stack([points[:, list(_KAGGLE_FROM_IBUG[n])].mean(axis=1) for n in KAGGLE15_NAMES],
                    axis=1).astype(points.dtype)


def mirror_permutation(names) -> np.ndarray:
    """Index array ``p`` with ``names[p[k]]`` the mirror partner of ``names[k]``.

    The partner swaps the words "left" and "right" (``left_eye_center`` ↔ ``right_eye_center``);
    a name without them is its own partner. After a horizontal flip, keypoint k of the flipped
    image is keypoint p[k] of the original, mirrored. Raises ConfigError if a partner is missing.
    """
    names = [str(n) for n in names]
    index = {n: k for k, n in enumerate(names)}
    perm = []
    for n in names:
        partner = n.replace("left", "\0").replace("right", "left").replace("\0", "right")
        if partner not in index:
            raise ConfigError(f"mirror_permutation: keypoint {n!r} has no partner {partner!r} "
                              "among the names; cannot swap left and right")
        perm.append(index[partner])
    return np.asarray(perm, np.intp)
