"""Image sources: ImageFolder, flat ImageNet, archives, odd colour modes, unreadable files."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.data import load_batch, open_image_set
from edge.errors import EdgeError


def _transform(im: Image.Image):
    import torch

    return torch.tensor(list(im.resize((8, 8)).getdata()), dtype=torch.float32).T.reshape(3, 8, 8)


def test_flat_imagenet_folder_is_labelled_by_synset(imagenet: Path) -> None:
    s = open_image_set(imagenet)
    assert s.layout == "imagenet-flat" and len(s.items) == 500
    classes = (imagenet.parent / "imagenet_classes.txt").read_text().split("\n")
    for it in s.items[:20]:
        assert classes[it.label].split()[0] == it.path.name.split("_")[0]
    assert all(it.label % 2 == 0 for it in s.items)  # the sample holds the even class indices


def test_imagefolder_and_tar_archive(tmp_path: Path) -> None:
    for cls, colour in (("cat", "red"), ("dog", "blue")):
        (tmp_path / "tree" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (10, 10), colour).save(tmp_path / "tree" / cls / f"{i}.jpg")
    s = open_image_set(tmp_path / "tree")
    assert s.layout == "imagefolder" and s.classes == ["cat", "dog"] and len(s.items) == 6
    with tarfile.open(tmp_path / "t.tar.gz", "w:gz") as tf:
        tf.add(tmp_path / "tree", arcname="wrapped/tree")
    a = open_image_set(tmp_path / "t.tar.gz")
    assert a.classes == ["cat", "dog"] and len(a.items) == 6
    sub = open_image_set(f"{tmp_path / 't.tar.gz'}::wrapped/tree/dog")
    assert len(sub.items) == 3 and sub.labelled is False


def test_cifar_archive_subfolder() -> None:
    from conftest import CIFAR

    s = open_image_set(f"{CIFAR}::cifar10/test")
    assert s.classes is not None and s.classes[0] == "airplane" and len(s.classes) == 10
    assert len(s.items) == 5000


def test_split_is_seeded_and_disjoint(imagenet: Path) -> None:
    s = open_image_set(imagenet)
    a1, b1 = s.split(50, seed=3)
    a2, _ = s.split(50, seed=3)
    a3, _ = s.split(50, seed=4)
    assert [i.path for i in a1.items] == [i.path for i in a2.items]
    assert [i.path for i in a1.items] != [i.path for i in a3.items]
    assert not {i.path for i in a1.items} & {i.path for i in b1.items}


def test_gray_cmyk_converted_and_corrupt_skipped(tmp_path: Path) -> None:
    Image.new("L", (12, 12), 128).save(tmp_path / "gray.jpg")
    Image.new("CMYK", (12, 12), (0, 255, 0, 0)).save(tmp_path / "cmyk.jpg")
    Image.new("RGBA", (12, 12), (1, 2, 3, 4)).save(tmp_path / "rgba.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    s = open_image_set(tmp_path)
    b = load_batch(s.items, _transform)
    assert b.images.shape == (3, 3, 8, 8)
    assert [p.name for p, _ in b.skipped] == ["broken.jpg"]


def test_empty_and_missing_sources_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeError, match="no images found"):
        open_image_set(tmp_path / "empty")
    with pytest.raises(EdgeError, match="does not exist"):
        open_image_set(tmp_path / "nope")
    (tmp_path / "only_bad").mkdir()
    (tmp_path / "only_bad" / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(EdgeError, match="could be read"):
        load_batch(open_image_set(tmp_path / "only_bad").items, _transform)


def _reference_rgb(path: Path) -> np.ndarray:
    """A decode built by hand from PIL: upright per EXIF; 16-bit greyscale scaled to 8 bits
    (v * 255 / 65535, rounded), every other mode through PIL's own conversion to RGB."""
    from PIL import ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode.startswith("I;16"):
            wide = np.asarray(im).astype(np.float64)
            im = Image.fromarray(np.round(wide * 255 / 65535).astype(np.uint8)).convert("RGB")
        return np.asarray(im.convert("RGBA" if im.mode == "P" else im.mode).convert("RGB"))


def test_every_image_mode_decodes_like_the_reference(tmp_path: Path) -> None:
    """16-bit (PIL would clip it to white), palette with and without transparency, RGBA, CMYK,
    greyscale and EXIF-rotated images: edge's decode is the reference decode, pixel for pixel."""
    import torch

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    gray16 = (np.linspace(0, 65535, 12 * 16).reshape(12, 16)).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "gray16.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(tmp_path / "gray16_of_8bit.png")
    Image.fromarray(rgb).quantize(16).save(tmp_path / "palette.png")
    Image.fromarray(rgb).quantize(16).save(tmp_path / "palette_transparent.png", transparency=0)
    Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb[..., 1]).save(tmp_path / "gray.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif, quality=95)

    def as_tensor(im: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.array(im))

    items = open_image_set(tmp_path).items
    assert len(items) == 8
    for it in items:
        batch = load_batch([it], as_tensor)
        assert not batch.skipped, batch.skipped
        got = batch.images[0].numpy()
        assert got.dtype == np.uint8 and got.shape[-1] == 3, it.path.name
        np.testing.assert_array_equal(got, _reference_rgb(it.path), err_msg=it.path.name)
    decode = {it.path.name: load_batch([it], as_tensor).images[0].numpy() for it in items}
    assert decode["rotated.jpg"].shape == (16, 12, 3)  # upright: width and height swapped
    np.testing.assert_array_equal(decode["gray16_of_8bit.png"][..., 0], rgb[..., 0])  # exact 8 -> 16 -> 8
    assert decode["gray16.png"].min() == 0 and decode["gray16.png"].max() == 255  # a ramp, not white
