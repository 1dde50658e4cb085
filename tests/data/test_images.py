"""Decoding of every supported file kind, malformed inputs, and the decoded-image cache."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from sclib.data.images import (
    ImageReadError,
    array_to_rgb,
    build_image_cache,
    load_image,
    read_image_info,
    resize_image,
)

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


# Each builder writes one file into a folder and returns its path.
def _corrupt_png(folder: Path) -> Path:
    data = bytearray(_png_bytes(RGB))
    data[40:80] = b"\x00" * 40  # overwrites the start of the first IDAT chunk
    path = folder / "corrupt.png"
    path.write_bytes(bytes(data))
    return path


def _zero_byte(folder: Path) -> Path:
    path = folder / "empty.png"
    path.write_bytes(b"")
    return path


def _truncated_jpeg(folder: Path) -> Path:
    data = _jpeg_bytes(RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8))
    path = folder / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    return path


def _text_as_png(folder: Path) -> Path:
    path = folder / "notes.png"
    path.write_text("this is not an image\n")
    return path


def _npy_float_out_of_range(folder: Path) -> Path:
    path = folder / "wide.npy"
    np.save(path, np.full((4, 4), 3.5, dtype=np.float32))
    return path


def _npy_nan(folder: Path) -> Path:
    path = folder / "nan.npy"
    array = np.zeros((4, 4), dtype=np.float32)
    array[1, 1] = np.nan
    np.save(path, array)
    return path


def _npy_object(folder: Path) -> Path:
    path = folder / "object.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return path


def _npy_bad_shape(folder: Path) -> Path:
    path = folder / "volume.npy"
    np.save(path, np.zeros((5, 6, 7, 8), dtype=np.uint8))
    return path


def _npy_int32_wide(folder: Path) -> Path:
    path = folder / "int32.npy"
    np.save(path, np.full((4, 4), 70000, dtype=np.int32))
    return path


UNREADABLE_CASES = {
    "corrupt_png": _corrupt_png,
    "zero_byte": _zero_byte,
    "truncated_jpeg": _truncated_jpeg,
    "text_named_png": _text_as_png,
    "npy_float_out_of_range": _npy_float_out_of_range,
    "npy_nan": _npy_nan,
    "npy_object_array": _npy_object,
    "npy_4d": _npy_bad_shape,
    "npy_int32_above_255": _npy_int32_wide,
}


@pytest.mark.parametrize("builder", UNREADABLE_CASES.values(), ids=UNREADABLE_CASES.keys())
def test_load_image_rejects_malformed_file(tmp_path, builder):
    path = builder(tmp_path)
    with pytest.raises(ImageReadError) as caught:
        load_image(path)
    message = str(caught.value)
    assert str(path) in message
    assert "skip_unreadable=True" in message
    assert caught.value.path == path
    assert isinstance(caught.value, ValueError)


def test_load_image_zero_byte_message_says_empty(tmp_path):
    with pytest.raises(ImageReadError, match="empty"):
        load_image(_zero_byte(tmp_path))


def test_load_image_missing_file_raises_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")


# Each case: (builder writing the file, expected uint8 (H, W, 3) array).
def _case_grey(folder):
    grey = RGB[:, :, 0]
    Image.fromarray(grey).save(folder / "grey.png")
    return folder / "grey.png", np.repeat(grey[:, :, None], 3, axis=2)


def _case_rgba(folder):
    rgba = np.concatenate([RGB, np.zeros((12, 10, 1), dtype=np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(folder / "rgba.png")
    return folder / "rgba.png", RGB  # alpha 0 everywhere, so compositing would differ


def _case_palette(folder):
    image = Image.fromarray(RGB).quantize(colors=16)
    image.save(folder / "palette.png")
    return folder / "palette.png", np.asarray(image.convert("RGB"))


def _case_png16(folder):
    raw = np.array([[0, 257 * 100, 65535, 65535 // 2]], dtype=np.uint16).repeat(3, axis=0)
    Image.fromarray(raw).save(folder / "deep.png")
    expected = np.array([[0, 100, 255, 127]], dtype=np.uint8).repeat(3, axis=0)
    return folder / "deep.png", np.repeat(expected[:, :, None], 3, axis=2)


def _case_png16_dark(folder):
    # dtype-range scaling: a dark 16-bit image stays dark instead of being stretched
    raw = np.array([[0, 514, 1028]], dtype=np.uint16)
    Image.fromarray(raw).save(folder / "dark.png")
    expected = np.array([[0, 2, 4]], dtype=np.uint8)
    return folder / "dark.png", np.repeat(expected[:, :, None], 3, axis=2)


def _case_tiff_rgb(folder):
    tifffile.imwrite(folder / "rgb.tif", RGB)
    return folder / "rgb.tif", RGB


def _case_tiff_uint16(folder):
    raw = RGB[:, :, 1].astype(np.uint16) * 257
    tifffile.imwrite(folder / "deep.tiff", raw)
    return folder / "deep.tiff", np.repeat(RGB[:, :, 1:2], 3, axis=2)


def _case_tiff_float(folder):
    tifffile.imwrite(folder / "float.tif", RGB[:, :, 2].astype(np.float32) / 255.0)
    return folder / "float.tif", np.repeat(RGB[:, :, 2:3], 3, axis=2)


def _case_tiff_planar(folder):
    tifffile.imwrite(
        folder / "planar.tif", np.moveaxis(RGB, -1, 0), photometric="rgb", planarconfig="separate"
    )
    return folder / "planar.tif", RGB


def _case_bmp(folder):
    Image.fromarray(RGB).save(folder / "image.bmp")
    return folder / "image.bmp", RGB


def _case_jpeg(folder):
    (folder / "image.jpg").write_bytes(_jpeg_bytes(RGB))
    return folder / "image.jpg", None  # lossy: only the shape is checked


def _case_npy_float(folder):
    np.save(folder / "float.npy", RGB.astype(np.float64) / 255.0)
    return folder / "float.npy", RGB


def _case_npy_uint16(folder):
    np.save(folder / "deep.npy", RGB.astype(np.uint16) * 257)
    return folder / "deep.npy", RGB


def _case_npy_2d(folder):
    np.save(folder / "flat.npy", RGB[:, :, 0])
    return folder / "flat.npy", np.repeat(RGB[:, :, :1], 3, axis=2)


def _case_npy_channels_first(folder):
    np.save(folder / "chw.npy", np.moveaxis(RGB, -1, 0))
    return folder / "chw.npy", RGB


def _case_npy_bool(folder):
    mask = RGB[:, :, 0] > 127
    np.save(folder / "bool.npy", mask)
    return folder / "bool.npy", np.repeat(mask[:, :, None], 3, axis=2).astype(np.uint8) * 255


def _case_one_bit(folder):
    mask = RGB[:, :, 0] > 127
    Image.fromarray(mask).save(folder / "bits.png")
    return folder / "bits.png", np.repeat(mask[:, :, None], 3, axis=2).astype(np.uint8) * 255


def _case_grey_alpha(folder):
    Image.fromarray(RGB[:, :, :2], mode="LA").save(folder / "la.png")
    return folder / "la.png", np.repeat(RGB[:, :, :1], 3, axis=2)


def _case_non_square(folder):
    wide = RNG.integers(0, 256, size=(5, 17, 3), dtype=np.uint8)
    Image.fromarray(wide).save(folder / "wide.png")
    return folder / "wide.png", wide


def _case_uppercase_extension(folder):
    Image.fromarray(RGB).save(folder / "IMAGE.PNG", format="PNG")
    return folder / "IMAGE.PNG", RGB


READABLE_CASES = {
    "grey": _case_grey,
    "rgba_alpha_dropped": _case_rgba,
    "palette": _case_palette,
    "png16_scaled_by_dtype_range": _case_png16,
    "png16_dark_not_stretched": _case_png16_dark,
    "tiff_rgb": _case_tiff_rgb,
    "tiff_uint16": _case_tiff_uint16,
    "tiff_float": _case_tiff_float,
    "tiff_planar": _case_tiff_planar,
    "bmp": _case_bmp,
    "jpeg": _case_jpeg,
    "npy_float": _case_npy_float,
    "npy_uint16": _case_npy_uint16,
    "npy_2d": _case_npy_2d,
    "npy_channels_first": _case_npy_channels_first,
    "npy_bool": _case_npy_bool,
    "one_bit": _case_one_bit,
    "grey_alpha": _case_grey_alpha,
    "non_square": _case_non_square,
    "uppercase_extension": _case_uppercase_extension,
}


@pytest.mark.parametrize("builder", READABLE_CASES.values(), ids=READABLE_CASES.keys())
def test_load_image_converts_to_uint8_rgb(tmp_path, builder):
    path, expected = builder(tmp_path)
    image = load_image(path)
    assert image.dtype == np.uint8
    assert image.ndim == 3
    assert image.shape[2] == 3
    assert image.flags.writeable
    if expected is None:
        assert image.shape[:2] == RGB.shape[:2]
    else:
        np.testing.assert_array_equal(image, expected)


def test_read_image_info_reports_size_and_mode(tmp_path):
    path, _ = _case_png16(tmp_path)
    info = read_image_info(path)
    assert (info.width, info.height) == (4, 3)
    assert info.mode.startswith("I")
    np.save(tmp_path / "deep.npy", np.zeros((6, 5), dtype=np.uint16))
    info = read_image_info(tmp_path / "deep.npy")
    assert (info.width, info.height) == (5, 6)
    assert info.mode == "L;uint16"
    path, _ = _case_tiff_planar(tmp_path)
    info = read_image_info(path)
    assert (info.width, info.height) == (10, 12)
    assert info.mode == "RGB"


def test_resize_image_makes_non_square_square():
    wide = RNG.integers(0, 256, size=(5, 17, 3), dtype=np.uint8)
    resized = resize_image(wide, 8)
    assert resized.shape == (8, 8, 3)
    assert resized.dtype == np.uint8


def test_resize_image_keeps_constant_image_constant():
    constant = np.full((40, 23, 3), 77, dtype=np.uint8)
    np.testing.assert_array_equal(resize_image(constant, 9), np.full((9, 9, 3), 77, dtype=np.uint8))


# Property tests: generated arrays survive the round trip through a file.
_shapes = st.tuples(st.integers(1, 24), st.integers(1, 24))
_channels = st.sampled_from([None, 1, 3, 4])


@st.composite
def _arrays(draw):
    height, width = draw(_shapes)
    channels = draw(_channels)
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32]))
    shape = (height, width) if channels is None else (height, width, channels)
    if dtype is np.float32:
        elements = st.floats(0.0, 1.0, width=32)
    else:
        elements = st.integers(0, np.iinfo(dtype).max)
    return draw(hnp.arrays(dtype, shape, elements=elements))


def _expected_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    array = np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array[:, :, :3]
    if array.dtype == np.uint16:
        return np.round(array / 257.0).astype(np.uint8)
    if array.dtype == np.float32:
        return np.round(array.astype(np.float64) * 255.0).astype(np.uint8)
    return array


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(array=_arrays())
def test_load_image_npy_round_trip(array):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.npy"
        np.save(path, array)
        image = load_image(path)
    assert image.dtype == np.uint8
    assert image.shape == (array.shape[0], array.shape[1], 3)
    np.testing.assert_allclose(image.astype(int), _expected_rgb(array).astype(int), atol=1)


@settings(max_examples=40, deadline=None)
@given(
    shape=_shapes,
    mode=st.sampled_from(["L", "RGB", "RGBA", "I;16"]),
    seed=st.integers(0, 2**16),
)
def test_load_image_png_round_trip(shape, mode, seed):
    rng = np.random.default_rng(seed)
    channels = {"L": None, "RGB": 3, "RGBA": 4, "I;16": None}[mode]
    full_shape = shape if channels is None else (*shape, channels)
    dtype = np.uint16 if mode == "I;16" else np.uint8
    array = rng.integers(0, np.iinfo(dtype).max, size=full_shape, dtype=dtype, endpoint=True)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.png"
        Image.fromarray(array).save(path)
        image = load_image(path)
    np.testing.assert_array_equal(image, _expected_rgb(array))


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=300),
    suffix=st.sampled_from([".png", ".jpg", ".bmp", ".tif", ".npy"]),
)
def test_load_image_fuzz_random_bytes(data, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            image = load_image(path)
        except ImageReadError as error:
            assert str(path) in str(error)
        else:
            assert image.dtype == np.uint8
            assert image.shape[2] == 3


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_load_image_fuzz_damaged_png(data):
    encoded = bytearray(_png_bytes(RGB))
    start = data.draw(st.integers(8, len(encoded) - 1))
    patch = data.draw(st.binary(min_size=1, max_size=16))
    encoded[start : start + len(patch)] = patch
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "damaged.png"
        path.write_bytes(bytes(encoded))
        try:
            image = load_image(path)
        except ImageReadError:
            return
    assert image.shape == (12, 10, 3)


def test_array_to_rgb_rejects_zero_size():
    with pytest.raises(ImageReadError, match="zero size"):
        array_to_rgb(np.zeros((0, 4), dtype=np.uint8))


# Decoded-image cache.
def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
    }


def _image_paths(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png"))


def test_build_image_cache_shape_and_dtype(tiny_mvtec, tmp_path):
    paths = _image_paths(tiny_mvtec / "train")
    cache = build_image_cache(paths, 16, cache_dir=tmp_path / "cache")
    assert cache.images.shape == (len(paths), 3, 16, 16)
    assert cache.images.dtype == torch.uint8
    assert cache.paths == [p.resolve() for p in paths]
    assert cache.skipped == []
    expected = torch.from_numpy(resize_image(load_image(paths[0]), 16)).permute(2, 0, 1)
    assert torch.equal(cache.images[0], expected)


def test_build_image_cache_never_writes_into_data_folder(tiny_mvtec, tmp_path):
    data_root = tiny_mvtec.parent
    before = _snapshot(data_root)
    cache_dir = tmp_path / "cache"
    build_image_cache(_image_paths(tiny_mvtec), 16, cache_dir=cache_dir)
    build_image_cache(_image_paths(tiny_mvtec), 16, cache_dir=cache_dir)
    assert _snapshot(data_root) == before
    assert list((cache_dir / "images").glob("*.pt"))


def test_build_image_cache_reuses_cache_file(tiny_mvtec, tmp_path, monkeypatch):
    paths = _image_paths(tiny_mvtec / "test")
    first = build_image_cache(paths, 16, cache_dir=tmp_path / "cache")

    def fail(path):
        raise AssertionError(f"decoded {path} although a cache exists")

    monkeypatch.setattr("sclib.data.images.load_image", fail)
    second = build_image_cache(paths, 16, cache_dir=tmp_path / "cache")
    assert torch.equal(first.images, second.images)
    assert first.paths == second.paths


def test_build_image_cache_changed_file_invalidates(tiny_mvtec, tmp_path):
    paths = _image_paths(tiny_mvtec / "train")
    first = build_image_cache(paths, 8, cache_dir=tmp_path / "cache")
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(paths[0])
    os.utime(paths[0], ns=(0, paths[0].stat().st_mtime_ns + 10**9))
    second = build_image_cache(paths, 8, cache_dir=tmp_path / "cache")
    assert int(second.images[0].max()) == 0
    assert int(first.images[0].max()) > 0
    assert torch.equal(first.images[1:], second.images[1:])
    assert len(list((tmp_path / "cache" / "images").glob("*.pt"))) == 2


def test_build_image_cache_size_changes_key(tiny_mvtec, tmp_path):
    paths = _image_paths(tiny_mvtec / "train")
    small = build_image_cache(paths, 8, cache_dir=tmp_path / "cache")
    large = build_image_cache(paths, 12, cache_dir=tmp_path / "cache")
    assert small.images.shape[-1] == 8
    assert large.images.shape[-1] == 12


def test_build_image_cache_default_dir_from_env(tiny_mvtec, tmp_path, monkeypatch):
    monkeypatch.setenv("SCLIB_CACHE_DIR", str(tmp_path / "env_cache"))
    build_image_cache(_image_paths(tiny_mvtec / "train"), 8)
    assert list((tmp_path / "env_cache" / "images").glob("*.pt"))


def test_build_image_cache_rejects_cache_inside_data(tiny_mvtec):
    with pytest.raises(ValueError, match="inside the data folder"):
        build_image_cache(_image_paths(tiny_mvtec), 8, cache_dir=tiny_mvtec / "cache")


def test_build_image_cache_rejects_cache_in_subset_of_one_class(tiny_mvtec):
    paths = _image_paths(tiny_mvtec / "train" / "good")
    with pytest.raises(ValueError, match="inside the data folder"):
        build_image_cache(paths, 8, cache_dir=tiny_mvtec / "cache")
    assert not (tiny_mvtec / "cache").exists()


def test_build_image_cache_unreadable_raises_by_default(tiny_mvtec, tmp_path):
    broken = _text_as_png(tiny_mvtec / "test" / "dent")
    with pytest.raises(ImageReadError) as caught:
        build_image_cache(_image_paths(tiny_mvtec), 8, cache_dir=tmp_path / "cache")
    assert str(broken) in str(caught.value)


def test_build_image_cache_skip_unreadable_warns_once(tiny_mvtec, tmp_path):
    broken = _zero_byte(tiny_mvtec / "test" / "dent")
    paths = _image_paths(tiny_mvtec)
    with pytest.warns(UserWarning) as record:
        cache = build_image_cache(paths, 8, cache_dir=tmp_path / "cache", skip_unreadable=True)
    assert len(record) == 1
    assert str(broken) in str(record[0].message)
    assert cache.skipped == [broken.resolve()]
    assert len(cache) == len(paths) - 1
    assert cache.images.shape[0] == len(paths) - 1
    assert broken.resolve() not in cache.paths


def test_build_image_cache_rejects_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        build_image_cache([], 8, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="size"):
        build_image_cache([tmp_path / "a.png"], 0, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="single path"):
        build_image_cache(str(tmp_path / "a.png"), 8, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="single path"):
        build_image_cache(tmp_path / "a.png", 8, cache_dir=tmp_path / "cache")


def test_load_image_applies_exif_orientation(tmp_path):
    pixels = np.zeros((4, 8, 3), dtype=np.uint8)
    pixels[:, :4] = 255  # left half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "photo.jpg"
    image.save(path, exif=exif, quality=100)

    loaded = load_image(path)

    assert loaded.shape == (8, 4, 3)
    assert loaded[:4].mean() > 200  # the white half is now on top
    assert loaded[4:].mean() < 50
