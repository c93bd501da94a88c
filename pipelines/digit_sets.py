"""Out-of-sample digit sets, generated (nothing downloaded, nothing stored).

MNIST alone cannot show how the model fares on the page's canvas, so these generators draw
onto the page's canvas geometry (560x280 pixels, stroke width 6-40 px) and the page's own
preprocessing (`digits.ink` -> `digits.segment` -> `digits.to_mnist`) turns them into model input:

- `sklearn_digits`: scikit-learn's bundled `load_digits` (1,797 8x8 digits by 43 writers not in MNIST),
  scaled up onto the canvas;
- `hershey_digits`: digits in OpenCV's Hershey stroke fonts (plain, italic, script) under random
  affine transforms and stroke widths; `hershey_numbers` joins 2-4 of them so that they touch;
- `non_digits`: Hershey letters that do not look like digits, scribbles, dots, filled blocks, lines.

Each returns canvases as uint8 ink images (H, W) (0 = paper, 255 = ink) with their labels; the
same seed gives the same set.
"""

from __future__ import annotations

import cv2
import numpy as np

W, H = 560, 280  # the page's canvas
STROKE = (6, 40)  # the page's stroke-width slider

# Hershey fonts: plain, the script ones, each optionally italic.
FONTS = [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
         cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX]
FONT_NAMES = {cv2.FONT_HERSHEY_SIMPLEX: "simplex", cv2.FONT_HERSHEY_PLAIN: "plain", cv2.FONT_HERSHEY_DUPLEX: "duplex",
              cv2.FONT_HERSHEY_COMPLEX: "complex", cv2.FONT_HERSHEY_TRIPLEX: "triplex",
              cv2.FONT_HERSHEY_SCRIPT_SIMPLEX: "script", cv2.FONT_HERSHEY_SCRIPT_COMPLEX: "script complex"}
# Letters a reader would not take for a digit (O/0, I/1, Z/2, S/5, b/6, T/7, B/8, g/9 are left out).
LETTERS = "ACEFHKMNPRUVWXYacdefhkmnprtuvwxy"
NON_DIGIT_KINDS = ("letter", "scribble", "dots", "block", "line")


def _font(rng) -> int:
    return int(rng.choice(FONTS)) | (cv2.FONT_ITALIC if rng.random() < 0.3 else 0)


def _glyph(text: str, font: int, height: float, thickness: int) -> np.ndarray:
    """`text` drawn in `font` with its digits about `height` px tall, on a tight canvas."""
    (w0, h0), _ = cv2.getTextSize("0", font, 1.0, 1)
    scale = height / max(h0, 1)
    (w, h), base = cv2.getTextSize(text, font, scale, thickness)
    pad = thickness + int(0.3 * height)
    img = np.zeros((h + base + 2 * pad, w + 2 * pad), np.uint8)
    cv2.putText(img, text, (pad, pad + h), font, scale, 255, thickness, cv2.LINE_AA)
    return img


def _affine(img: np.ndarray, rng, rotate: float = 12, shear: float = 0.3, stretch: float = 0.2) -> np.ndarray:
    """A random rotation, shear and aspect change about the centre (the output grows to fit)."""
    a = np.deg2rad(rng.uniform(-rotate, rotate))
    m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.array(
        [[1 + rng.uniform(-stretch, stretch), rng.uniform(-shear, shear)], [0, 1]])
    h, w = img.shape
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], float) @ m.T
    lo, hi = corners.min(0), corners.max(0)
    out_w, out_h = int(np.ceil(hi[0] - lo[0])), int(np.ceil(hi[1] - lo[1]))
    full = np.hstack([m, -lo[:, None]]).astype(np.float32)
    return cv2.warpAffine(img, full, (out_w, out_h), flags=cv2.INTER_LINEAR)


def _crop(img: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(img > 10)
    return img[ys.min():ys.max() + 1, xs.min():xs.max() + 1] if len(ys) else img


def _place(ink: np.ndarray, rng, max_h: int = 230, max_w: int = 520) -> np.ndarray:
    """Put ink on the canvas at a random position, shrunk if it does not fit."""
    ink = _crop(ink)
    h, w = ink.shape
    scale = min(1.0, max_h / h, max_w / w)
    if scale < 1:
        ink = cv2.resize(ink, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
        h, w = ink.shape
    canvas = np.zeros((H, W), np.uint8)
    y, x = rng.integers(0, H - h + 1), rng.integers(0, W - w + 1)
    canvas[y:y + h, x:x + w] = ink
    return canvas


def _thickness(rng, height: float) -> int:
    """A slider stroke width, at most a fifth of the glyph height (thicker only blots)."""
    return int(min(rng.integers(STROKE[0], STROKE[1] + 1), max(STROKE[0], height / 5)))


def hershey_digit(digit: int, rng) -> np.ndarray:
    """One stroke-font digit on the canvas: random font, size, stroke width and affine transform."""
    height = rng.uniform(90, 210)
    return _place(_affine(_glyph(str(digit), _font(rng), height, _thickness(rng, height)), rng), rng)


def hershey_digits(n: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """`n` single stroke-font digits (set b): (canvases, labels 0-9), classes balanced."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    return [hershey_digit(int(d), rng) for d in labels], labels


def hershey_number(text: str, rng, overlap: tuple[float, float] = (0.05, 0.25)) -> np.ndarray:
    """Digits of `text` side by side, each pushed into its neighbour by `overlap` of its width,
    so that the strokes touch: one font, size and stroke width, one affine for the whole number."""
    font = _font(rng)
    height = rng.uniform(80, 150)
    thick = _thickness(rng, height)
    glyphs = [_crop(_glyph(ch, font, height, thick)) for ch in text]
    gap = [int(g.shape[1] * rng.uniform(*overlap)) for g in glyphs]
    width = sum(g.shape[1] for g in glyphs) - sum(gap[1:])
    tall = max(g.shape[0] for g in glyphs)
    row = np.zeros((tall, width), np.uint8)
    x = 0
    for i, g in enumerate(glyphs):
        x -= gap[i] if i else 0
        y = tall - g.shape[0]  # baseline-aligned (all digits sit on the line)
        row[y:, x:x + g.shape[1]] = np.maximum(row[y:, x:x + g.shape[1]], g)
        x += g.shape[1]
    return _place(_affine(row, rng, rotate=6, shear=0.25, stretch=0.1), rng)


def hershey_numbers(n: int, seed: int = 0, lengths=(2, 3, 4)) -> tuple[list[np.ndarray], list[str]]:
    """`n` numbers of 2-4 touching stroke-font digits: (canvases, the numbers as strings)."""
    rng = np.random.default_rng(seed)
    texts = ["".join(str(d) for d in rng.integers(0, 10, rng.choice(lengths))) for _ in range(n)]
    return [hershey_number(t, rng) for t in texts], texts


def sklearn_digits(limit: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """scikit-learn's bundled 8x8 digits (set a), scaled up to the size people draw on the canvas."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images, labels = d.images[:limit], d.target[:limit]
    rng = np.random.default_rng(0)
    out = []
    for img in images:
        side = int(rng.uniform(150, 230))
        big = cv2.resize((img / 16 * 255).astype(np.float32), (side, side), interpolation=cv2.INTER_CUBIC)
        out.append(_place(np.clip(big, 0, 255).astype(np.uint8), rng))
    return out, np.asarray(labels)


# ---------------------------------------------------------------- non-digits (set c)


def _letter(rng) -> np.ndarray:
    height = rng.uniform(90, 210)
    text = str(rng.choice(list(LETTERS)))
    return _place(_affine(_glyph(text, _font(rng), height, _thickness(rng, height)), rng), rng)


def _scribble(rng) -> np.ndarray:
    canvas = np.zeros((H, W), np.uint8)
    cx, cy, r = rng.uniform(150, 410), rng.uniform(90, 190), rng.uniform(50, 120)
    pts = np.stack([cx + rng.normal(0, r, 12), cy + rng.normal(0, r * 0.6, 12)], 1)
    pts = np.clip(pts, 5, [W - 5, H - 5]).astype(np.int32)
    for _ in range(int(rng.integers(1, 3))):
        cv2.polylines(canvas, [pts[rng.permutation(12)[: int(rng.integers(5, 12))]]], False, 255,
                      int(rng.integers(*STROKE)), cv2.LINE_AA)
    return canvas


def _dots(rng) -> np.ndarray:
    canvas = np.zeros((H, W), np.uint8)
    r = int(rng.integers(STROKE[0], STROKE[1] + 1)) // 2 + 1
    cx, cy = rng.uniform(120, 440), rng.uniform(80, 200)
    for _ in range(int(rng.integers(2, 7))):
        p = (int(cx + rng.uniform(-100, 100)), int(cy + rng.uniform(-60, 60)))
        cv2.circle(canvas, p, r, 255, -1, cv2.LINE_AA)
    return canvas


def _block(rng) -> np.ndarray:
    canvas = np.zeros((H, W), np.uint8)
    cx, cy = int(rng.uniform(150, 410)), int(rng.uniform(100, 180))
    a, b = int(rng.uniform(30, 110)), int(rng.uniform(30, 90))
    if rng.random() < 0.5:
        cv2.rectangle(canvas, (cx - a, cy - b), (cx + a, cy + b), 255, -1)
    else:
        cv2.ellipse(canvas, (cx, cy), (a, b), float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA)
    return _place(_affine(canvas, rng, rotate=20), rng)


def _line(rng) -> np.ndarray:
    """A straight stroke that is not upright (an upright stroke is a fair 1)."""
    canvas = np.zeros((H, W), np.uint8)
    angle = np.deg2rad(rng.uniform(-50, 50))
    length = rng.uniform(120, 400)
    c = np.array([rng.uniform(200, 360), rng.uniform(100, 180)])
    d = length / 2 * np.array([np.cos(angle), np.sin(angle)])
    cv2.line(canvas, tuple((c - d).astype(int)), tuple((c + d).astype(int)), 255,
             int(rng.integers(*STROKE)), cv2.LINE_AA)
    return canvas


_MAKERS = {"letter": _letter, "scribble": _scribble, "dots": _dots, "block": _block, "line": _line}


def non_digits(n: int, seed: int = 0, kinds=NON_DIGIT_KINDS) -> tuple[list[np.ndarray], list[str]]:
    """`n` canvases that hold no digit (set c): (canvases, the kind of each), kinds in turn."""
    rng = np.random.default_rng(seed)
    names = [kinds[i % len(kinds)] for i in range(n)]
    return [_MAKERS[k](rng) for k in names], names
