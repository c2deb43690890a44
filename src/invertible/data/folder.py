"""Any folder of PNG/JPEG images, decoded with Pillow.

Policy, chosen so that nothing is ever silently wrong:
- Files are found recursively and sorted by path; hidden files and folders (``.name``) and
  files without a ``.png``, ``.jpg`` or ``.jpeg`` extension are ignored.
- A file with an image extension that fails to decode is an error naming the file (it is
  not skipped: a dataset that quietly shrinks would change the reported figures).
- Pillow's decompression-bomb limit stays on, and its warning counts as an error. Every
  file's header is read for every split, so a bad file is reported whichever split holds it.
- With ``image_size`` every image is centre-cropped to that aspect ratio and resized
  (Lanczos); without it all images must already have the same size.
- ``grayscale=None`` picks grey when every file is stored as grey, colour otherwise.
- Labels are the indices of the sorted first-level subfolder names when every image lies in
  such a subfolder (the ImageFolder layout); otherwise there are none.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .base import DatasetError

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg"})
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def list_images(root: Path) -> list[Path]:
    """Sorted image paths under ``root``, skipping hidden entries and other extensions."""
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist or is not a folder")
    files = [
        p
        for p in root.rglob("*")
        if p.suffix.lower() in EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    if not files:
        raise DatasetError(f"no PNG or JPEG images found in {root}")
    return sorted(files)


def folder_labels(root: Path, files: list[Path]) -> np.ndarray | None:
    """Class indices from first-level subfolders, or None when images lie elsewhere."""
    parents = [p.relative_to(root).parts for p in files]
    if not all(len(parts) == 2 for parts in parents):
        return None
    classes = sorted({parts[0] for parts in parents})
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[parts[0]] for parts in parents], dtype=np.int64)


def _open(path: Path) -> Image.Image:
    """Open lazily (header only); every failure becomes a DatasetError naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DatasetError(f"{path}: refused as a possible decompression bomb ({e})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DatasetError(f"{path}: not a readable PNG/JPEG image ({e})") from None


def scan_headers(files: list[Path]) -> bool:
    """Open every file's header (so a bad file fails every split, not only the one holding
    it); True when all are stored in a grey mode."""
    grey = True
    for path in files:
        with _open(path) as img:
            grey = grey and img.mode in GREY_MODES
    return grey


def _to_8bit(img: Image.Image) -> Image.Image:
    """Wide grey modes scaled to 8 bits (Pillow's convert("L") would clip them)."""
    if img.mode.startswith("I"):
        arr = np.asarray(img).astype(np.int64)
        if arr.max(initial=0) > 255:
            arr = arr >> 8
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        return Image.fromarray(np.clip(np.rint(arr / top * 255), 0, 255).astype(np.uint8))
    return img


def decode(path: Path, size: tuple[int, int] | None, grey: bool) -> np.ndarray:
    """One image as uint8 ``(C, H, W)``, C = 1 if ``grey`` else 3."""
    with _open(path) as img:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img.load()
                out = ImageOps.exif_transpose(img)
                out = _to_8bit(out).convert("L" if grey else "RGB")
                if size is not None and out.size != (size[1], size[0]):
                    out = ImageOps.fit(out, (size[1], size[0]), Image.Resampling.LANCZOS)
                arr = np.asarray(out)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise DatasetError(f"{path}: refused as a possible decompression bomb ({e})") from None
        except (OSError, ValueError, SyntaxError) as e:
            raise DatasetError(f"{path}: cannot decode image ({e})") from None
    return arr[None] if grey else arr.transpose(2, 0, 1)


def load_folder(files: list[Path], size: tuple[int, int] | None, grey: bool) -> np.ndarray:
    """Decode ``files`` into uint8 ``(N, C, H, W)``; sizes must agree when ``size`` is None."""
    arrays: list[np.ndarray] = []
    for path in files:
        arr = decode(path, size, grey)
        if arrays and arr.shape != arrays[0].shape:
            first = arrays[0].shape[1:]
            raise DatasetError(
                f"images differ in size ({files[0].name}: {first[0]}x{first[1]}, "
                f"{path.name}: {arr.shape[1]}x{arr.shape[2]}); pass an image size"
            )
        arrays.append(arr)
    return np.stack(arrays)
