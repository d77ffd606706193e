"""Images: any size and pixel format to the square, normalised tensor the image encoder was trained on."""

from __future__ import annotations

import numpy as np

from ..errors import InputError

CROP_MARGIN = 0.1  # fraction of the object's size kept around its mask
MAX_IMAGE_SIDE = 2048  # larger pictures are shrunk first: the image encoders see 224 pixels or fewer
BORDER_TOLERANCE = 0.1  # a pixel within this of the border's colour (every channel, 0-1) is background-coloured
PLAIN_BORDER = 0.9  # the share of the border's pixels that must be background-coloured for a plain background
FLOOD_SIDE = 256  # the flood from the border runs on blocks of the picture at most this many on a side


def shrink_pixels(pixels: np.ndarray) -> np.ndarray:
    """At most MAX_IMAGE_SIDE on a side, in the array's own type, before any float copy (a 256 x 16384 strip
    would otherwise be padded square in floats: gigabytes). The same pixels a file gives (Pillow's thumbnail, as
    `backend.inputs.files` reads pictures) wherever Pillow holds the array's format; every k-th pixel otherwise."""
    pixels = np.asarray(pixels)
    if pixels.ndim < 2 or max(pixels.shape[:2]) <= MAX_IMAGE_SIDE:
        return pixels
    try:
        from PIL import Image

        image = Image.fromarray(pixels)
    except (ImportError, TypeError, ValueError):  # a format Pillow has no mode for (float RGB, 16-bit colour)
        step = -(-max(pixels.shape[:2]) // MAX_IMAGE_SIDE)
        return pixels[::step, ::step]
    image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    return np.asarray(image)


def to_rgb_and_alpha(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Float RGB (H, W, 3) in [0, 1], and the alpha mask (H, W) when the image has one."""
    pixels = shrink_pixels(pixels)
    if pixels.dtype == np.uint8:
        data = pixels.astype(np.float32) / 255.0
    elif pixels.dtype == np.uint16:
        data = pixels.astype(np.float32) / 65535.0
    elif pixels.dtype == bool:
        data = pixels.astype(np.float32)
    elif np.issubdtype(pixels.dtype, np.floating):
        data = np.nan_to_num(pixels.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0).clip(0.0, 1.0)
    else:
        raise InputError(f"Unsupported pixel type {pixels.dtype}; use 8- or 16-bit or floating-point images.")
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3 or data.shape[2] not in (1, 2, 3, 4) or min(data.shape[:2]) < 1:
        raise InputError(f"An image must be H x W with 1 to 4 channels; got shape {pixels.shape}.")
    channels = data.shape[2]
    alpha = data[:, :, -1] if channels in (2, 4) else None
    color = data[:, :, :3] if channels >= 3 else np.repeat(data[:, :, :1], 3, axis=2)
    return color, alpha


def prepare_image(pixels: np.ndarray, size: int, background: float, mean: float, std: float) -> tuple[np.ndarray, dict]:
    """(3, size, size) float32: the object composited on the training background, cropped to it, resized; and
    how the object was told from its background (`object_mask`), for the user to see."""
    color, alpha = to_rgb_and_alpha(pixels)
    coverage, source = object_mask(color, alpha)
    color = color * coverage[:, :, None] + background * (1.0 - coverage[:, :, None])
    color = _crop_to_mask(color, coverage > 0.5 if (coverage > 0.5).any() else coverage > 0)
    return fit_square(color, size, background, mean, std), source


def object_mask(color: np.ndarray, alpha: np.ndarray | None) -> tuple[np.ndarray, dict]:
    """How much of each pixel is the object (H, W) in [0, 1], and the rule that said so. The alpha channel where
    the image has one that masks something (Blender hands every image over as RGBA, opaque where the file had no
    alpha). Else the background is the border's colour: pixels within BORDER_TOLERANCE of the border's
    median colour that a flood from the border reaches through such pixels (so a white mug's body, inside its
    outline, stays object). A border that is not one plain colour is refused: a busy background would be read as
    part of the object."""
    if alpha is not None and alpha.min() < 1.0:
        if alpha.max() <= 0.0:
            raise InputError("The image is fully transparent: its alpha channel masks out everything.")
        return alpha, {"mask": "alpha"}
    reference = np.median(_ring(color), axis=0)
    matches = np.abs(color - reference).max(axis=2) <= BORDER_TOLERANCE
    plain = float(_ring(matches).mean())
    if plain < PLAIN_BORDER:
        raise InputError(
            f"The image has no alpha channel and its border is not one plain colour ({plain:.0%} of the border's "
            f"pixels lie within {BORDER_TOLERANCE} of its median colour; {PLAIN_BORDER:.0%} are needed), so the "
            "object cannot be told from its background. Fix: give the image an alpha channel (an RGBA PNG whose "
            "background is transparent), or photograph the object on a plain backdrop."
        )
    backdrop = _flood_from_border(matches)
    share = float(1.0 - backdrop.mean())
    if share <= 0.0:
        raise InputError(
            "The image is one plain colour: there is no object in it to reconstruct. Fix: give a picture of the "
            "object, on a plain backdrop or with an alpha channel."
        )
    colour = [round(float(c), 2) for c in reference]
    source = {"mask": "border", "background": colour, "tolerance": BORDER_TOLERANCE, "object_share": round(share, 3)}
    return (~backdrop).astype(np.float32), source


def _ring(image: np.ndarray) -> np.ndarray:
    """The pixels on an image's border, each once: (2 H + 2 W - 4, ...)."""
    return np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])


def _flood_from_border(matches: np.ndarray) -> np.ndarray:
    """The background-coloured pixels (H, W) connected to the image's border through background-coloured pixels
    (4-connected). The flood runs on blocks (a block is passable when all its pixels match), at most FLOOD_SIDE on
    a side so it takes at most that many steps of whole-array work; pixels that match in blocks beside the
    flooded ones join it, so the outline keeps the picture's own resolution."""
    h, w = matches.shape
    block = max(1, -(-max(h, w) // FLOOD_SIDE))
    padded = np.pad(matches, ((0, -h % block), (0, -w % block)), constant_values=True)
    passable = padded.reshape(padded.shape[0] // block, block, padded.shape[1] // block, block).all(axis=(1, 3))
    reached = np.zeros_like(passable)
    reached[[0, -1], :], reached[:, [0, -1]] = passable[[0, -1], :], passable[:, [0, -1]]
    while True:
        grown = _grow(reached) & passable
        if (grown == reached).all():
            break
        reached = grown
    near = _grow(reached)  # the flooded blocks and those beside them, where matching pixels are background too
    border = np.zeros_like(matches)
    border[[0, -1], :], border[:, [0, -1]] = True, True
    near = np.repeat(np.repeat(near, block, axis=0), block, axis=1)[:h, :w]
    return matches & (near | border)


def _grow(mask: np.ndarray) -> np.ndarray:
    """The mask and its 4-connected neighbours."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def fit_square(color: np.ndarray, size: int, background: float, mean: float, std: float) -> np.ndarray:
    """(3, size, size) float32 of an (H, W, 3) picture: padded square with the background, shrunk as scikit-image
    does (block means, then an anti-aliased resize), normalised."""
    color = _pad_square(color, background)
    factor = color.shape[0] // (2 * size)
    if factor > 1:  # box averages first: anti-aliased resizing straight from megapixels takes seconds
        color = box_mean(color, factor, background)
    color = resize_square(color, size)
    return np.ascontiguousarray(((color - mean) / std).transpose(2, 0, 1))


def _crop_to_mask(color: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    margin = int(CROP_MARGIN * max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1)
    r0, r1 = max(rows[0] - margin, 0), min(rows[-1] + margin + 1, color.shape[0])
    c0, c1 = max(cols[0] - margin, 0), min(cols[-1] + margin + 1, color.shape[1])
    return color[r0:r1, c0:c1]


def _pad_square(color: np.ndarray, background: float) -> np.ndarray:
    h, w = color.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    return np.pad(
        color, ((top, side - h - top), (left, side - w - left), (0, 0)), mode="constant", constant_values=background
    )


def box_mean(color: np.ndarray, factor: int, background: float) -> np.ndarray:
    """Means of factor x factor blocks, the image first padded at its far sides with the background to whole
    blocks (scikit-image's downscale_local_mean)."""
    h, w = color.shape[:2]
    padded = np.pad(color, ((0, -h % factor), (0, -w % factor), (0, 0)), mode="constant", constant_values=background)
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor, -1)
    return blocks.mean(axis=(1, 3), dtype=np.float64).astype(color.dtype)


def resize_square(color: np.ndarray, size: int) -> np.ndarray:
    """A square (S, S, C) image to (size, size, C) float32, as scikit-image's resize with anti-aliasing and
    bilinear interpolation does it: when shrinking, a Gaussian of sigma (S / size - 1) / 2 first; samples at
    pixel centres, (i + 0.5) * S / size - 0.5; borders mirrored about the edge pixels."""
    factor = color.shape[0] / size
    if factor > 1:
        for axis in (0, 1):
            color = _gaussian(color, (factor - 1) / 2, axis)
    for axis in (0, 1):
        color = _linear(color, size, axis)
    return color.astype(np.float32)


def _gaussian(image: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """Gaussian filter along one axis, truncated at 4 sigma, mirror borders (scipy.ndimage.gaussian_filter1d)."""
    radius = int(4.0 * sigma + 0.5)
    weights = np.exp(-0.5 / sigma**2 * np.arange(radius + 1) ** 2)
    weights /= weights[0] + 2 * weights[1:].sum()
    data = np.moveaxis(image, axis, 0).astype(np.float64)
    n = len(data)
    padded = np.pad(data, [(radius, radius)] + [(0, 0)] * (data.ndim - 1), mode="reflect")
    out = weights[0] * padded[radius : radius + n]
    for j in range(1, radius + 1):
        out += weights[j] * (padded[radius - j : radius - j + n] + padded[radius + j : radius + j + n])
    return np.moveaxis(out.astype(image.dtype), 0, axis)


def _linear(image: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Linear interpolation along one axis to `size` samples at pixel centres, mirror borders."""
    data = np.moveaxis(image, axis, 0)
    n = len(data)
    x = (np.arange(size) + 0.5) * (n / size) - 0.5
    if n == 1:
        return np.moveaxis(np.repeat(data, size, axis=0), 0, axis)
    x = np.abs(x)
    x = np.where(x > n - 1, 2 * (n - 1) - x, x)
    low = np.minimum(np.floor(x).astype(np.int64), n - 2)
    t = (x - low).reshape(-1, *([1] * (data.ndim - 1)))
    out = data[low] * (1 - t) + data[low + 1] * t
    return np.moveaxis(out.astype(image.dtype), 0, axis)
