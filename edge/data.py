"""Calibration and evaluation images: ImageFolder trees, flat ImageNet folders, and .tar.gz of either.

Why one module: every target calibrates and evaluates on the *same* images, picked by a seeded
sampler, so figures from different exporters are comparable.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import EdgeError

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm"})
CLASS_LIST_NAMES = ("imagenet_classes.txt", "classes.txt", "labels.txt")
SUBPATH_SEP = "::"  # `archive.tar.gz::cifar10/test` picks a folder inside an archive


@dataclass(frozen=True)
class ImageItem:
    path: Path
    label: int | None


@dataclass
class ImageSet:
    """A list of image files with optional integer labels and the class names they index."""

    source: str
    items: list[ImageItem]
    classes: list[str] | None = None
    layout: str = "flat"

    @property
    def labelled(self) -> bool:
        return any(it.label is not None for it in self.items)

    def split(self, n_first: int, seed: int) -> tuple[ImageSet, ImageSet]:
        """Seeded, disjoint split: the first ``n_first`` of a shuffled order, and the rest."""
        order = list(self.items)
        random.Random(seed).shuffle(order)
        head = ImageSet(self.source, order[:n_first], self.classes, self.layout)
        tail = ImageSet(self.source, order[n_first:], self.classes, self.layout)
        return head, tail


@dataclass
class Batch:
    """Preprocessed images (NCHW float32 tensor), their labels, and what could not be read."""

    images: Any  # torch.Tensor, kept untyped so this module imports without torch
    labels: list[int | None]
    paths: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def cache_root() -> Path:
    """edge's cache folder (extracted archives, reference models): $EDGE_CACHE, else ~/.cache/edge."""
    return Path(os.environ.get("EDGE_CACHE", Path.home() / ".cache" / "edge"))


def _extract_archive(archive: Path) -> Path:
    """Extract once into the cache (keyed by path, size and mtime), atomically, and reuse."""
    st = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    dest = cache_root() / "archives" / f"{archive.name}-{key}"
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        with tarfile.open(archive, "r:*") as tf:
            tf.extractall(tmp, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EdgeError(f"cannot read archive {archive}: {exc}") from exc
    try:
        os.replace(tmp, dest)
    except OSError:  # another process won the race: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")


def _descend(root: Path) -> Path:
    """Skip wrapper folders (an archive's single top directory) that hold nothing else."""
    while True:
        entries = [e for e in root.iterdir() if not e.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
        else:
            return root


def read_class_list(path: Path) -> list[str]:
    """`<synset> <name...>` or `<name>` per line; returns the first token of each line."""
    lines = [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]
    if not lines:
        raise EdgeError(f"class list {path} is empty")
    return lines


def _find_class_list(root: Path) -> Path | None:
    for d in (root, root.parent):
        for name in CLASS_LIST_NAMES:
            if (d / name).is_file():
                return d / name
    return None


def _timm_imagenet_synsets(files: list[Path]) -> list[str] | None:
    """ImageNet-1k synsets in class-index order from timm's bundled metadata (no network),
    used when files are named `<synset>_*` and no class list sits beside them."""
    if not files or not re.fullmatch(r"n\d{8}", files[0].name.split("_", 1)[0]):
        return None
    from edge._deps import has

    if not has("timm"):
        return None
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


def open_image_set(spec: str | Path, class_list: Path | None = None) -> ImageSet:
    """Open a folder or archive of images; raise EdgeError if it holds none."""
    text = str(spec)
    sub = ""
    if SUBPATH_SEP in text:
        text, sub = text.split(SUBPATH_SEP, 1)
    path = Path(text).expanduser()
    if not path.exists():
        raise EdgeError(f"image source {path} does not exist")
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise EdgeError(f"image source {path} is neither a folder nor a .tar/.tar.gz archive")
        root = _extract_archive(path)
        root = root / sub if sub else _descend(root)
    else:
        root = path / sub if sub else path
    if not root.is_dir():
        raise EdgeError(f"{sub!r} is not a folder inside {path}")

    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    class_dirs = [d for d in subdirs if any(_is_image(f) for f in d.iterdir())]
    if class_dirs:
        classes = [d.name for d in class_dirs]
        items = [
            ImageItem(f, idx) for idx, d in enumerate(class_dirs) for f in sorted(d.iterdir()) if _is_image(f)
        ]
        iset = ImageSet(str(spec), items, classes, "imagefolder")
    else:
        files = sorted(f for f in root.iterdir() if _is_image(f))
        cl_path = class_list or _find_class_list(root)
        synsets = read_class_list(cl_path) if cl_path else _timm_imagenet_synsets(files)
        index = {s: i for i, s in enumerate(synsets)} if synsets else {}
        items = [ImageItem(f, index.get(f.name.split("_", 1)[0])) for f in files]
        labelled = any(it.label is not None for it in items)
        iset = ImageSet(str(spec), items, synsets if labelled else None, "imagenet-flat" if labelled else "flat")
    if not iset.items:
        raise EdgeError(f"no images found in {spec} (looked for {', '.join(sorted(IMAGE_EXTS))})")
    return iset


SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def to_rgb(im: Any) -> Any:
    """An 8-bit RGB copy of a decoded PIL image, upright as its EXIF orientation says.

    Why not ``im.convert("RGB")`` alone: PIL clips 16-bit greyscale (``I;16``, and ``I`` from 16-bit
    sources) to 255 instead of scaling it, so a 16-bit PNG turns white; and a palette image with
    transparency warns unless it goes through RGBA."""
    import numpy as np
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode in SIXTEEN_BIT_MODES:
        wide = np.clip(np.asarray(im, dtype=np.int64), 0, 65535)
        im = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8))
    elif im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    return im.convert("RGB")


def load_batch(
    items: Sequence[ImageItem],
    transform: Callable[[Any], Any],
    limit: int | None = None,
    progress: str | None = None,
) -> Batch:
    """Decode and preprocess up to ``limit`` readable images; unreadable ones are skipped and counted.

    Grayscale (8- and 16-bit), palette, RGBA and CMYK images become 8-bit RGB (``to_rgb``), as the
    models expect.
    """
    import torch
    from PIL import Image, UnidentifiedImageError

    from edge.progress import bar

    tensors: list[Any] = []
    labels: list[int | None] = []
    paths: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    want = len(items) if limit is None else limit
    with bar(total=want, desc=progress, unit="img") as pbar:
        for it in items:
            if len(tensors) >= want:
                break
            try:
                with Image.open(it.path) as im:
                    im.load()
                    rgb = to_rgb(im)
            except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
                skipped.append((it.path, f"{type(exc).__name__}: {exc}"))
                continue
            tensors.append(transform(rgb))
            labels.append(it.label)
            paths.append(it.path)
            pbar.update(1)
    if not tensors:
        raise EdgeError(f"none of the {len(items)} images could be read ({len(skipped)} unreadable)")
    return Batch(torch.stack(tensors), labels, paths, skipped)


def skipped_note(kind: str, skipped: Sequence[tuple[Path, str]], shown: int = 10) -> str:
    """One line naming the unreadable files (the first ``shown`` of them), so they can be found."""
    names = ", ".join(p.name for p, _ in skipped[:shown])
    more = f" and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"skipped {len(skipped)} unreadable {kind} file(s): {names}{more}"


def augment(x: Any, gen: Any) -> Any:
    """Random horizontal flip and reflect-padded shift of an NCHW batch, drawn from ``gen`` (seeded
    training: fine-tuning and QAT decode images once and augment tensors)."""
    import torch

    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    pad = max(1, x.shape[-1] // 8)
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy, dx = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=gen))
    return xp[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]
