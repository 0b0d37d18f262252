"""Drawing the synthetic world's faces: a 2-D parametric face whose expression is carried only by AUs.

Every facial feature is a polygon in face coordinates (x right, y down, face half-width = 1). The 17 AU
intensities of ``AUS_17`` move those polygons (AU12 lifts the lip corners, AU4 lowers and knits the brows,
...), a pseudo-3-D head pose shifts features by their depth, and OpenCV fills them anti-aliased with
sub-pixel precision. Hand-written because no library draws a face from action units; OpenCV only
supplies the primitives. Deformations are deliberately generous so that they stay visible at 64 px.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from affectlab.labels import AUS_17

AU_INDEX = {au: i for i, au in enumerate(AUS_17)}
OCCLUDERS = ("hand", "hair", "sunglasses", "microphone", "mask")
_SHIFT = 4                       # OpenCV sub-pixel bits: coordinates are multiplied by 16
_HAIR = np.array([[30, 25, 20], [70, 45, 25], [140, 100, 50], [200, 170, 100], [150, 60, 30], [160, 160, 160]])


@dataclass
class Identity:
    """What stays fixed for a subject (colours are RGB)."""
    skin: np.ndarray
    hair: np.ndarray
    hair_style: int             # 0 short, 1 long, 2 bald, 3 fringe
    iris: np.ndarray
    face_w: float
    face_h: float
    eye_dx: float
    eye_w: float
    eye_h: float
    brow_thick: float
    nose_len: float
    nose_w: float
    mouth_w: float
    lip: float
    glasses: bool
    beard: bool
    gain: float                 # personal expressiveness
    va_bias: np.ndarray         # resting valence, arousal


def random_identity(rng: np.random.Generator) -> Identity:
    t = rng.uniform()  # skin tone from dark to light, a wide range on purpose
    skin = (1 - t) * np.array([70, 45, 32]) + t * np.array([245, 212, 190]) + rng.normal(0, 8, 3)
    return Identity(
        skin=np.clip(skin, 20, 255), hair=np.clip(_HAIR[rng.integers(len(_HAIR))] + rng.normal(0, 10, 3), 0, 255),
        hair_style=int(rng.integers(4)), iris=rng.uniform(20, 140, 3),
        face_w=rng.uniform(0.88, 1.08), face_h=rng.uniform(1.2, 1.4), eye_dx=rng.uniform(0.36, 0.46),
        eye_w=rng.uniform(0.15, 0.2), eye_h=rng.uniform(0.065, 0.09), brow_thick=rng.uniform(0.045, 0.08),
        nose_len=rng.uniform(0.28, 0.38), nose_w=rng.uniform(0.12, 0.18), mouth_w=rng.uniform(0.3, 0.4),
        lip=rng.uniform(0.06, 0.09), glasses=bool(rng.uniform() < 0.15), beard=bool(rng.uniform() < 0.2),
        gain=rng.uniform(0.75, 1.15), va_bias=rng.normal(0, 0.1, 2),
    )


def random_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A cluttered scene: a colour gradient with random boxes, discs and lines, slightly blurred."""
    c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    ramp = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    img = np.ascontiguousarray(np.broadcast_to(c0 * (1 - ramp) + c1 * ramp, (size, size, 3))).astype(np.uint8)
    for _ in range(int(rng.integers(4, 12))):
        color = tuple(int(c) for c in rng.uniform(0, 255, 3))
        p = rng.uniform(-0.1, 1.1, 4) * size
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), color, -1)
        elif kind == 1:
            cv2.circle(img, (int(p[0]), int(p[1])), int(abs(p[2] - p[0]) / 3) + 2, color, -1, cv2.LINE_AA)
        else:
            cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), color, int(rng.integers(1, 4)), cv2.LINE_AA)
    return cv2.GaussianBlur(img, (3, 3), 0)


@lru_cache(maxsize=None)
def _bezier_basis(n):
    t = np.linspace(0, 1, n)
    return np.stack([(1 - t) ** 2, 2 * (1 - t) * t, t ** 2], 1)  # [n, 3]


def _quad(p0, c, p1, n=9):
    """Points of a quadratic Bezier curve from p0 through control c to p1."""
    return _bezier_basis(n) @ np.array([p0, c, p1], dtype=float)


@lru_cache(maxsize=None)
def _circle(n, a0, a1):
    a = np.linspace(a0, a1, n)
    return np.stack([np.cos(a), np.sin(a)], 1)


def _ellipse(cx, cy, rx, ry, n=24, a0=0.0, a1=2 * np.pi):
    return _circle(n, a0, a1) * (rx, ry) + (cx, cy)


class _Canvas:
    """Projects face coordinates (with a depth per point) to pixels and draws anti-aliased polygons."""

    def __init__(self, img, center, unit, yaw, pitch, roll):
        self.img, self.center, self.unit = img, np.asarray(center, float), unit
        cr, sr = np.cos(roll), np.sin(roll)
        scale = unit * (1 << _SHIFT)
        self.proj = np.array([[cr, -sr], [sr, cr]]).T * scale
        self.offset = self.center * (1 << _SHIFT) + 0.5
        self.depth_shift = np.array([[np.sin(yaw), -np.sin(pitch)]])

    def px(self, pts, depth=0.5):
        pts = np.asarray(pts, float)
        # Orthographic pseudo-3-D: a point at depth z moves sideways by z*sin(yaw), up/down by z*sin(pitch).
        z = depth * np.sqrt(np.maximum(1 - (pts[:, :1] * (1 / 1.1)) ** 2, 0))
        moved = pts + z * self.depth_shift
        return (moved @ self.proj + self.offset).astype(np.int32)

    def fill(self, pts, color, depth=0.5):
        cv2.fillPoly(self.img, [self.px(pts, depth)], _c(color), cv2.LINE_AA, _SHIFT)

    def line(self, pts, color, width, depth=0.5):
        w = max(1, int(round(width * self.unit)))
        cv2.polylines(self.img, [self.px(pts, depth)], False, _c(color), w, cv2.LINE_AA, _SHIFT)


def _c(color):
    return tuple(min(255, max(0, int(v))) for v in color)


def _band(upper, lower):
    """A closed polygon between two curves sharing their x direction."""
    return np.concatenate([upper, lower[::-1]])


def draw_face(img: np.ndarray, ident: Identity, aus: np.ndarray, pose=(0.0, 0.0, 0.0), align=(0.0, 0.0, 1.0),
              occluder: str | None = None, occ_pos: float = 0.5) -> np.ndarray:
    """Draw one face on ``img`` (uint8 HxWx3, modified in place and returned).

    ``aus``: the 17 intensities of ``AUS_17`` in [0, 1]; ``pose``: yaw, pitch, roll in radians;
    ``align``: centre shift (fraction of the image) and scale, the imperfect alignment of a face crop.
    """
    a = {au: float(aus[i]) for au, i in AU_INDEX.items()}
    size = img.shape[0]
    yaw, pitch, roll = pose
    cv = _Canvas(img, (size * (0.5 + align[0]), size * (0.52 + align[1])), size * 0.29 * align[2], yaw, pitch, roll)
    skin, hair = ident.skin, ident.hair
    shade, dark = skin * 0.72, skin * 0.45
    fw, fh = ident.face_w, ident.face_h
    jaw = 0.12 * a["AU26"] + 0.04 * a["AU25"]          # the jaw drop lengthens the lower face

    if ident.hair_style == 1:  # long hair behind the face
        cv.fill(np.concatenate([_ellipse(0, -0.15, fw * 1.22, fh * 1.05, 20, np.pi, 2 * np.pi),
                                [[fw * 1.25, fh * 0.9], [-fw * 1.25, fh * 0.9]]]), hair, 0.0)
    cv.fill([[-0.45, 0.8], [0.45, 0.8], [0.5, 2.0], [-0.5, 2.0]], shade, 0.0)  # neck
    outline = _ellipse(0, 0, fw, fh, 32)
    outline[:, 1] += np.where(outline[:, 1] > 0, jaw * (outline[:, 1] / fh) ** 2, 0)
    cv.fill(outline, skin, 0.0)
    for s in (-1, 1):  # ears
        cv.fill(_ellipse(s * fw * 0.98, -0.05, 0.12, 0.22, 12), shade, 0.0)
    if ident.beard:
        beard = np.concatenate([_ellipse(0, 0, fw, fh + jaw, 16, 0.15, np.pi - 0.15),
                                [[-0.55, 0.45], [0.55, 0.45]][::-1]])
        cv.fill(beard, 0.6 * skin * 0.3 + 0.4 * hair, 0.3)
    if ident.hair_style != 2:  # hair on top
        top = _ellipse(0, -0.1, fw * 1.06, fh * 1.02, 20, np.pi * 1.13, np.pi * 1.87)
        line = -0.86 + (0.2 if ident.hair_style == 3 else 0.0)
        cap = np.concatenate([top, [[fw * 0.85, line + 0.05], [0, line], [-fw * 0.85, line + 0.05]]])
        cv.fill(cap, hair, 0.1)

    # Cheeks (AU6 raises them: a shaded crescent under the eyes), nasolabial folds (AU11, AU10, AU12).
    cheek = a["AU6"]
    for s in (-1, 1):
        ex = s * ident.eye_dx
        if cheek > 0.05:
            cv.line(_quad((ex - 0.14 * s, 0.08 - 0.06 * cheek), (ex, 0.02 - 0.1 * cheek), (ex + 0.16 * s, 0.06 - 0.06 * cheek), 7),
                    skin * (1 - 0.35 * cheek), 0.03 + 0.03 * cheek)
        fold = 0.25 + 0.75 * max(a["AU11"], 0.8 * a["AU10"], 0.7 * a["AU12"], 0.5 * a["AU9"])
        mx = ident.mouth_w + 0.08 * a["AU12"] + 0.1 * a["AU20"]
        cv.line(_quad((s * (ident.nose_w + 0.06), 0.2), (s * (mx + 0.05), 0.35), (s * (mx + 0.06), 0.58 + 0.05 * a["AU26"]), 7),
                skin * (1 - 0.3 * fold), 0.02 + 0.025 * fold)

    # Eyes: lids as curves; AU5 lifts the upper lid, AU6/AU7 raise the lower lid and narrow the opening.
    ey = -0.12
    for s in (-1, 1):
        ex, w = s * ident.eye_dx, ident.eye_w
        up_h = ident.eye_h * (1 + 0.9 * a["AU5"] - 0.5 * a["AU7"] - 0.15 * a["AU6"] - 0.3 * a["AU4"])
        lo_h = ident.eye_h * (0.8 - 0.55 * a["AU7"] - 0.45 * a["AU6"])
        upper = _quad((ex - w, ey), (ex, ey - 2 * up_h), (ex + w, ey), 9)
        lower = _quad((ex - w, ey), (ex, ey + 2 * max(lo_h, 0.005)), (ex + w, ey), 9)
        cv.fill(_band(upper, lower), (235, 235, 230), 0.45)
        circ = _ellipse(ex, ey + 0.2 * (lo_h - up_h), ident.eye_h * 1.15, ident.eye_h * 1.15, 14)
        lid_top = np.interp(circ[:, 0], upper[:, 0], upper[:, 1])
        lid_bot = np.interp(circ[:, 0], lower[:, 0], lower[:, 1])
        circ[:, 1] = np.clip(circ[:, 1], lid_top, np.maximum(lid_top, lid_bot))  # keep the iris inside the lids
        cv.fill(circ, ident.iris, 0.45)
        cv.line(upper, dark * 0.6, 0.035, 0.45)
        cv.line(lower, dark, 0.015, 0.45)

    # Brows: AU1 lifts the inner end, AU2 the outer end, AU4 lowers and knits them (plus a vertical furrow).
    by = ey - 0.2
    for s in (-1, 1):
        inner_x = s * (0.14 - 0.07 * a["AU4"])
        outer_x = s * (ident.eye_dx + ident.eye_w + 0.05)
        inner_y = by - 0.2 * a["AU1"] + 0.13 * a["AU4"] + 0.04 * a["AU9"]
        outer_y = by + 0.03 - 0.2 * a["AU2"] + 0.04 * a["AU4"]
        mid = ((inner_x + outer_x) / 2, min(inner_y, outer_y) - 0.07 - 0.05 * a["AU2"])
        top = _quad((inner_x, inner_y), mid, (outer_x, outer_y), 8)
        t = ident.brow_thick * np.linspace(1.0, 0.55, 8)[:, None]
        cv.fill(_band(top, top + np.concatenate([0 * t, t], 1)), hair * 0.75, 0.5)
    if a["AU4"] > 0.1:
        for s in (-1, 1):
            cv.line([[s * 0.05, by + 0.02], [s * 0.04, by + 0.16]], skin * (1 - 0.4 * a["AU4"]), 0.025)

    # Nose: bridge, wrinkles (AU9), nostrils lifted by AU9 / AU10.
    nb = ey + ident.nose_len + 0.1 - 0.05 * a["AU9"] - 0.03 * a["AU10"]
    cv.line([[0.0, ey + 0.02], [0.03, nb - 0.04]], shade, 0.025, 0.9)
    cv.line(_quad((-ident.nose_w, nb - 0.03), (0, nb + 0.06), (ident.nose_w, nb - 0.03), 7), dark, 0.03, 0.9)
    for k in range(3 if a["AU9"] > 0.1 else 0):
        y = ey + 0.06 + 0.05 * k
        cv.line([[-0.09, y], [0.09, y - 0.01]], skin * (1 - 0.45 * a["AU9"]), 0.02, 0.8)

    # Mouth: corners moved by AU12 (up, out), AU15 (down), AU20 (out), AU23/AU24 (thinner, pressed);
    # the opening by AU25 (parted) and AU26 (jaw drop); AU10 lifts the upper lip, AU17 pushes the lower lip up.
    my = 0.55 - 0.03 * a["AU10"] - 0.03 * a["AU17"]
    half = ident.mouth_w * (1 + 0.2 * a["AU12"] + 0.35 * a["AU20"] - 0.18 * a["AU23"] - 0.1 * a["AU24"])
    cy = my - 0.2 * a["AU12"] + 0.17 * a["AU15"] + 0.02 * a["AU20"]
    thin = max(0.25, 1 - 0.6 * a["AU23"] - 0.6 * a["AU24"])
    lip = ident.lip * thin
    gap = max(0.0, 0.13 * a["AU25"] + 0.22 * a["AU26"] - 0.1 * a["AU24"])
    curve = 0.1 * a["AU12"] - 0.08 * a["AU15"] - 0.05 * a["AU17"]   # smile bends the mouth line up at the ends
    uc, lc = (my - 0.03 * a["AU10"], my + gap)
    L, R = (-half, cy), (half, cy)
    upper_out = _quad(L, (0, uc - 2 * lip - 0.06 * a["AU10"]), R, 11)
    upper_in = _quad(L, (0, uc + curve), R, 11)
    lower_in = _quad(L, (0, lc + curve + 0.02 * a["AU25"]), R, 11)
    lower_out = _quad(L, (0, lc + curve + 2.2 * lip + 0.04 - 0.03 * a["AU17"]), R, 11)
    lip_col = skin * np.array([0.85, 0.55, 0.55]) + np.array([30, 0, 0])
    cv.fill(_band(upper_out, lower_out), lip_col, 0.6)
    if gap > 0.01:
        cv.fill(_band(upper_in, lower_in), (45, 20, 25), 0.6)
        teeth = _band(upper_in, upper_in + [0, min(0.05, gap * 0.5)])
        cv.fill(teeth, (235, 232, 220), 0.6)
    cv.line(upper_in if gap <= 0.01 else lower_in, lip_col * 0.55, 0.02 + 0.02 * a["AU24"], 0.6)
    if a["AU17"] > 0.1:  # chin boss
        chin_y = fh + jaw - 0.28
        cv.line(_quad((-0.2, chin_y), (0, chin_y - 0.08 * a["AU17"]), (0.2, chin_y), 7), skin * (1 - 0.35 * a["AU17"]), 0.025)

    if ident.glasses:
        for s in (-1, 1):
            cv.line(_ellipse(s * ident.eye_dx, ey, ident.eye_w + 0.08, 0.17, 16), (30, 30, 30), 0.035, 0.6)
        cv.line([[-ident.eye_dx + ident.eye_w + 0.08, ey], [ident.eye_dx - ident.eye_w - 0.08, ey]], (30, 30, 30), 0.03, 0.7)
    if occluder:
        _draw_occluder(cv, occluder, occ_pos, ident, fh + jaw)
    return img


def _draw_occluder(cv: _Canvas, kind: str, pos: float, ident: Identity, chin: float) -> None:
    side = 1 if pos > 0.5 else -1
    if kind == "hand":  # a palm and four fingers over one side of the lower face
        x = side * (0.25 + 0.4 * abs(pos - 0.5))
        hand_col = ident.skin * 0.92 + 10
        cv.fill(_ellipse(x, 0.65, 0.38, 0.42, 18), hand_col, 0.9)
        for k in range(4):
            fx = x - 0.27 + 0.18 * k
            cv.fill([[fx - 0.07, 0.5], [fx + 0.07, 0.5], [fx + 0.06, -0.15 + 0.05 * abs(k - 1.5)], [fx - 0.06, -0.15]], hand_col, 0.9)
    elif kind == "hair":  # a strand sweeping over one eye
        x = side * ident.eye_dx
        cv.fill([[x - 0.35, -0.9], [x + 0.3, -0.9], [x + 0.25, 0.25], [x - 0.15, 0.1]], ident.hair, 0.7)
    elif kind == "sunglasses":
        for s in (-1, 1):
            cv.fill(_ellipse(s * ident.eye_dx, -0.1, ident.eye_w + 0.1, 0.16, 16), (15, 15, 20), 0.6)
        cv.line([[-0.2, -0.12], [0.2, -0.12]], (15, 15, 20), 0.04, 0.7)
    elif kind == "microphone":
        x = side * 0.2 * pos
        cv.fill([[x - 0.06, 0.7], [x + 0.06, 0.7], [x + 0.08, 2.0], [x - 0.08, 2.0]], (30, 30, 30), 1.2)
        cv.fill(_ellipse(x, 0.62, 0.2, 0.2, 16), (70, 70, 75), 1.2)
    elif kind == "mask":  # a surgical mask from the nose to below the chin
        col = (150 + 60 * pos, 200, 230)
        cv.fill(np.concatenate([[[-0.85, 0.15], [0.0, 0.05], [0.85, 0.15]], _ellipse(0, 0.3, 0.8, chin - 0.25, 14, 0.1, np.pi - 0.1)]), col, 0.7)
    else:
        raise ValueError(f"unknown occluder {kind!r}; known: {OCCLUDERS}")


def noise_bank(rng: np.random.Generator, size: int) -> np.ndarray:
    """Unit sensor noise a little larger than a frame; ``camera`` crops it at random offsets, which is
    far cheaper than drawing fresh Gaussian noise for every frame."""
    return rng.standard_normal((size + 16, size + 16, 3), dtype=np.float32)


def camera(img: np.ndarray, rng: np.random.Generator, light: tuple[float, float, float], blur: int, noise: float,
           bank: np.ndarray | None = None) -> np.ndarray:
    """The camera's nuisances: an illumination gradient (gain, strength, direction), horizontal motion blur
    of ``blur`` pixels, sensor noise of std ``noise`` (cropped from ``bank``). JPEG artefacts come from the
    writer's quality."""
    size = img.shape[0]
    gain, strength, angle = light
    ramp = np.arange(size, dtype=np.float32) / size - 0.5
    grad = gain + strength * (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None])
    out = img.astype(np.float32) * grad[:, :, None]
    if blur >= 2:
        k = np.zeros((blur, blur), np.float32)
        k[blur // 2, :] = 1.0 / blur
        out = cv2.filter2D(out, -1, k)
    if noise > 0:
        if bank is None:
            bank = noise_bank(rng, size)
        dy, dx = rng.integers(0, bank.shape[0] - size + 1, 2)
        out += bank[dy:dy + size, dx:dx + size] * noise
    return np.clip(out, 0, 255).astype(np.uint8)
