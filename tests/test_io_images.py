"""Image reading and writing (convtool.io): modes, 16-bit, palettes, alpha, EXIF, atomic writes, bad files."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from convtool.errors import InputError, OutputError
from convtool.io.publish import publish_with
from convtool.io.read import read_image
from convtool.io.save import save_image


def test_sixteen_bit_gray_keeps_its_range(tmp_path):
    data = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(data).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.bit_depth == 16 and image.max_value == 65535
    np.testing.assert_array_equal(image.pixels, data)


def test_palette_image_reads_as_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb).quantize(8).save(tmp_path / "p.png")
    expected = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"), dtype=np.float32)
    np.testing.assert_array_equal(read_image(tmp_path / "p.png").pixels, expected)


def test_alpha_is_split_off(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 255, (4, 6, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(image.pixels, rgba[..., :3])
    np.testing.assert_array_equal(image.alpha, rgba[..., 3])


def test_gray_conversion_is_bt601_luma(astronaut, tmp_path):
    Image.fromarray(astronaut.astype(np.uint8)).save(tmp_path / "c.png")
    gray = read_image(tmp_path / "c.png", gray=True).pixels
    expected = np.asarray(Image.fromarray(astronaut.astype(np.uint8)).convert("L"), dtype=np.float32)
    np.testing.assert_allclose(gray, expected, atol=1.0)  # Pillow rounds to integers


def test_exif_orientation_is_honoured(tmp_path):
    data = np.zeros((4, 10), dtype=np.uint8)
    data[0, :] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(data).save(tmp_path / "o.png", exif=exif)
    pixels = read_image(tmp_path / "o.png").pixels
    assert pixels.shape == (10, 4) and (pixels[:, -1] == 255).all()


@pytest.mark.parametrize("content,message", [(b"", "empty"), (b"hello, not an image", "not an image"),
                                             (None, "truncated")])
def test_bad_files_give_one_line_errors(tmp_path, camera, content, message):
    path = tmp_path / "bad.png"
    if content is None:
        Image.fromarray(camera.astype(np.uint8)).save(path)
        content = path.read_bytes()[:-400]
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        read_image(path)
    assert "\n" not in str(info.value)


def test_missing_file_and_decompression_bomb(tmp_path, camera, monkeypatch):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "nope.png")
    Image.fromarray(camera.astype(np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(InputError, match="decompression bomb"):
        read_image(tmp_path / "big.png")


def test_outputs_round_trip(tmp_path, astronaut):
    values = astronaut - 100.5
    save_image(tmp_path / "v.npy", values)
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), values)
    save_image(tmp_path / "v.tif", values)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "v.tif"), values)
    save_image(tmp_path / "g.tif", values[..., 0])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "g.tif")), values[..., 0])
    save_image(tmp_path / "w.png", np.full((3, 4), 40000.0), bit_depth=16)
    assert np.asarray(Image.open(tmp_path / "w.png")).max() == 40000


def test_publish_leaves_nothing_on_interrupt(tmp_path):
    def write_half(tmp):
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        publish_with(tmp_path / "out.png", write_half)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="does not exist"):
        save_image(tmp_path / "file" / "o.png", np.zeros((2, 2)))


def _class_tree(root, rotated: bool):
    """Two classes of 4x10 images with a white top row; ``rotated`` marks them EXIF-orientation 6."""
    data = np.zeros((4, 10), dtype=np.uint8)
    data[0, :] = 255
    exif = Image.Exif()
    if rotated:
        exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(data).save(root / name / f"{i}.png", exif=exif)
    (root / "cat" / "notes.txt").write_text("not an image: skipped")
    (root / ".cache").mkdir()  # hidden: not a class
    return root


def test_training_folders_are_read_with_exif_orientation(tmp_path):
    from convtool.nn.data import load_folder

    data = load_folder(_class_tree(tmp_path / "t", rotated=True))
    assert data.classes == ["cat", "dog"] and data.images.shape == (4, 1, 10, 4)
    assert (data.images[:, 0, :, -1] == 255).all()  # the top row became the right column


def test_training_refuses_a_decompression_bomb(tmp_path, monkeypatch):
    from convtool.nn.data import load_folder

    root = _class_tree(tmp_path / "t", rotated=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)
    with pytest.raises(InputError, match="0.png: refused as a possible decompression bomb"):
        load_folder(root)


def test_animated_images_give_their_first_frame_with_a_notice(tmp_path):
    from convtool.errors import Notice

    frames = [Image.fromarray(np.full((3, 3), v, np.uint8)) for v in (10, 200, 90)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "a.tif", save_all=True, append_images=frames[1:])
    for name in ("a.gif", "a.tif"):
        with pytest.warns(Notice, match=rf"{name}: has 3 frames; only the first is used"):
            pixels = read_image(tmp_path / name).pixels
        assert pixels.mean() == pytest.approx(10, abs=1)
