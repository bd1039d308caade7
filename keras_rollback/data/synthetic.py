"""A synthetic person re-identification dataset in the Market-1501 layout and naming.

The generator draws identities with distinct but confusable appearance: a small palette of
clothing colours shared by many identities, clothing textures (plain, stripes, checks),
sleeve and trouser lengths, body height and build, skin and hair, and accessories (backpack,
bag, hat). Each camera has its own background, lighting, colour cast, blur and noise; each
image jitters the pose (walking phase, facing direction), position and scale. Images of an
identity under two cameras therefore differ more in raw pixels than images of two
identities under the same camera, so matching raw pixels does poorly while a model that
learns the person's appearance does well. The gallery also holds distractors (pid `0000`,
people of no other split) and junk images (pid `-1`, background and fragments).

The output is deterministic for a seed and fast to write (about a millisecond an image), so
tests and the offline default job of the project use it in place of Market-1501.
"""

import hashlib
import json
import os
import pathlib
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from keras_rollback import _atomic_files

# Clothing colours, RGB. Few enough that many identities share a colour.
CLOTHING_PALETTE = np.array(
    [
        (20, 20, 24),
        (235, 235, 230),
        (128, 128, 132),
        (160, 30, 35),
        (35, 60, 150),
        (40, 110, 60),
        (220, 190, 60),
        (120, 80, 50),
        (200, 110, 160),
        (90, 170, 200),
    ],
    dtype=np.float32,
)
SKIN_TONES = np.array([(240, 200, 170), (200, 150, 110), (130, 90, 60)], dtype=np.float32)
HAIR_COLOURS = np.array(
    [(25, 20, 15), (90, 60, 30), (180, 150, 90), (150, 150, 150)], dtype=np.float32
)
TEXTURES = ("plain", "horizontal_stripes", "vertical_stripes", "checks")
ACCESSORIES = ("none", "backpack", "bag", "hat")
MIN_IMAGE_SIZE = (32, 16)
MAX_CAMERAS = 9  # Market-1501 names carry a single camera digit.
# Written last: lists every image with its size and SHA-256, so a reader can tell a complete
# dataset from one whose writer was killed, or one edited since.
MANIFEST = "synthetic_market1501.json"
SPLIT_FOLDERS = ("bounding_box_train", "query", "bounding_box_test")


def check_positive_int(name, value, minimum=1):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"Expected an integer {name} >= {minimum}. Received: {name}={value!r}.")


def draw_identity(rng):
    """Draws the appearance of one person."""
    upper, lower, pattern = rng.choice(len(CLOTHING_PALETTE), 3, replace=False)
    return {
        "upper": CLOTHING_PALETTE[upper],
        "lower": CLOTHING_PALETTE[lower],
        "pattern": CLOTHING_PALETTE[pattern],
        "texture": TEXTURES[rng.integers(len(TEXTURES))],
        "stripe_period": float(rng.uniform(0.03, 0.07)),
        "short_sleeves": bool(rng.random() < 0.4),
        "shorts": bool(rng.random() < 0.25),
        "height": float(rng.uniform(0.78, 0.95)),
        "build": float(rng.uniform(0.85, 1.2)),
        "skin": SKIN_TONES[rng.integers(len(SKIN_TONES))],
        "hair": HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))],
        "long_hair": bool(rng.random() < 0.3),
        "shoes": CLOTHING_PALETTE[rng.integers(3)],
        "accessory": ACCESSORIES[rng.integers(len(ACCESSORIES))],
        "accessory_colour": CLOTHING_PALETTE[rng.integers(len(CLOTHING_PALETTE))],
    }


def draw_camera(rng, image_size):
    """Draws one camera: a background scene twice the image width, lighting, blur, noise."""
    height, width = image_size
    wall_top, wall_bottom, floor = rng.uniform(40, 220, size=(3, 3)).astype(np.float32)
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    scene = np.broadcast_to(
        wall_top + (wall_bottom - wall_top) * rows, (height, 2 * width, 3)
    ).copy()
    horizon = int(height * rng.uniform(0.6, 0.8))
    scene[horizon:] = floor
    for _ in range(rng.integers(3, 7)):  # Pillars, windows, signs.
        y0, x0 = rng.integers(0, horizon), rng.integers(0, 2 * width)
        y1, x1 = (
            y0 + rng.integers(height // 8, height // 2),
            x0 + rng.integers(width // 8, width // 2),
        )
        scene[y0:y1, x0:x1] = rng.uniform(20, 240, size=3)
    return {
        "scene": scene,
        "gain": float(rng.uniform(0.6, 1.25)),
        "cast": rng.uniform(0.8, 1.2, size=3).astype(np.float32),
        "blur": int(rng.integers(0, 3)),
        "noise": float(rng.uniform(2.0, 8.0)),
    }


def paint_box(canvas, y0, y1, x0, x1, colour, mask=None):
    """Paints an axis-aligned box, clipped to the canvas; coordinates in pixels.

    `mask` (a boolean `[H, W]` array or None) gets the painted pixels set to True.
    """
    height, width = canvas.shape[:2]
    y0, y1 = max(0, int(round(y0))), min(height, int(round(y1)))
    x0, x1 = max(0, int(round(x0))), min(width, int(round(x1)))
    if y0 < y1 and x0 < x1:
        canvas[y0:y1, x0:x1] = colour
        if mask is not None:
            mask[y0:y1, x0:x1] = True


def paint_person(canvas, person, rng, *, fragment=False, mask=None):
    """Paints a person with a random pose, position and scale onto `canvas`.

    `mask` (a boolean `[H, W]` array or None) gets every pixel painted with the person (body,
    clothes, head, hair, accessories) set to True; it draws nothing from `rng`.
    """
    height, width = canvas.shape[:2]
    body_h = height * person["height"] * rng.uniform(0.92, 1.05)
    top = (height - body_h) * rng.uniform(0.2, 0.9)
    centre = width / 2 + width * rng.uniform(-0.08, 0.08)
    half_w = body_h * 0.13 * person["build"]
    phase = rng.uniform(-1.0, 1.0)  # Walking: leg spread and arm swing.
    facing = 1 if rng.random() < 0.5 else -1

    def y(fraction):
        return top + fraction * body_h

    sleeve = person["skin"] if person["short_sleeves"] else person["upper"]
    arm_w = half_w * 0.45
    for side in (-1, 1):
        arm_x = centre + side * (half_w + arm_w / 2) + side * phase * arm_w * 0.3
        paint_box(
            canvas,
            y(0.16),
            y(0.30),
            arm_x - arm_w / 2,
            arm_x + arm_w / 2,
            person["upper"],
            mask=mask,
        )
        paint_box(canvas, y(0.30), y(0.50), arm_x - arm_w / 2, arm_x + arm_w / 2, sleeve, mask=mask)
    if person["accessory"] == "backpack":
        paint_box(
            canvas,
            y(0.17),
            y(0.46),
            centre - facing * half_w * 1.5,
            centre - facing * half_w * 0.2,
            person["accessory_colour"],
            mask=mask,
        )
    paint_box(
        canvas, y(0.15), y(0.52), centre - half_w, centre + half_w, person["upper"], mask=mask
    )
    torso_rows = slice(max(0, int(y(0.15))), max(0, min(height, int(y(0.52)))))
    torso_cols = slice(max(0, int(centre - half_w)), max(0, min(width, int(centre + half_w))))
    if person["texture"] != "plain":
        period = max(2.0, person["stripe_period"] * body_h)
        rows = (np.arange(torso_rows.start, torso_rows.stop)[:, None] // period) % 2
        cols = (np.arange(torso_cols.start, torso_cols.stop)[None, :] // period) % 2
        stripes = {"horizontal_stripes": rows, "vertical_stripes": cols, "checks": rows + cols}[
            person["texture"]
        ]
        region = canvas[torso_rows, torso_cols]
        painted = np.broadcast_to(stripes % 2 == 1, region.shape[:2])
        region[painted] = person["pattern"]
        if mask is not None:  # The texture's slice can pass the torso box by a pixel.
            mask[torso_rows, torso_cols] |= painted
    if fragment:  # Junk: a cut-off upper body.
        return
    leg_w = half_w * 0.85
    spread = phase * half_w * 0.5
    for side in (-1, 1):
        leg_x = centre + side * (half_w * 0.5 + spread * side)
        paint_box(
            canvas,
            y(0.50),
            y(0.93),
            leg_x - leg_w / 2,
            leg_x + leg_w / 2,
            person["lower"],
            mask=mask,
        )
        if person["shorts"]:
            paint_box(
                canvas,
                y(0.68),
                y(0.93),
                leg_x - leg_w / 2,
                leg_x + leg_w / 2,
                person["skin"],
                mask=mask,
            )
        paint_box(
            canvas,
            y(0.93),
            y(1.0),
            leg_x - leg_w / 2,
            leg_x + leg_w / 2 + facing * leg_w * 0.3,
            person["shoes"],
            mask=mask,
        )
    if person["accessory"] == "bag":
        paint_box(
            canvas,
            y(0.44),
            y(0.60),
            centre + facing * half_w,
            centre + facing * half_w * 1.8,
            person["accessory_colour"],
            mask=mask,
        )
    head_y, head_ry, head_rx = y(0.075), body_h * 0.07, half_w * 0.6
    rows, cols = np.ogrid[:height, :width]
    head = ((rows - head_y) / head_ry) ** 2 + ((cols - centre) / head_rx) ** 2 <= 1.0
    canvas[head] = person["skin"]
    if mask is not None:
        mask |= head
    hair_bottom = y(0.16) if person["long_hair"] else head_y - head_ry * 0.2
    canvas[head & (rows < hair_bottom)] = person["hair"]
    if person["long_hair"]:
        paint_box(
            canvas,
            head_y,
            y(0.2),
            centre - facing * head_rx * 1.1,
            centre - facing * head_rx * 0.2,
            person["hair"],
            mask=mask,
        )
    if person["accessory"] == "hat":
        paint_box(
            canvas,
            head_y - head_ry * 1.15,
            head_y - head_ry * 0.4,
            centre - head_rx * 1.4,
            centre + head_rx * 1.4,
            person["accessory_colour"],
            mask=mask,
        )


def rotate_hue(image, degrees):
    """Turns the hue of an `[H, W, 3]` RGB image by `degrees`, keeping its luma.

    The rotation about the grey axis of RGB (the standard hue-rotate matrix of SVG and CSS
    filters): greys stay grey, saturated colours change into others (at 120 degrees red
    becomes green, green blue, blue red). The result is clipped to `[0, 255]`.
    """
    if degrees == 0:
        return image
    angle = np.deg2rad(degrees)
    cos, sin = np.cos(angle), np.sin(angle)
    luma = np.array([0.213, 0.715, 0.072])
    matrix = (
        np.outer(np.ones(3), luma)
        + cos * (np.eye(3) - np.outer(np.ones(3), luma))
        + sin * np.array([[-0.213, -0.715, 0.928], [0.143, 0.140, -0.283], [-0.787, 0.715, 0.072]])
    )
    return np.clip(image @ matrix.T.astype(np.float32), 0.0, 255.0)


def box_blur(image, radius):
    """Blurs an `[H, W, 3]` image with a `(2 radius + 1)`-wide box, edges replicated."""
    if radius == 0:
        return image
    padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    size = 2 * radius + 1
    height, width = image.shape[:2]
    rows = sum(padded[dy : dy + height] for dy in range(size)) / size
    return sum(rows[:, dx : dx + width] for dx in range(size)) / size


def render(camera, person, rng, image_size, *, fragment=False, hue_rotation=0.0):
    """Renders one uint8 image of `person` (or background only if `None`) under `camera`."""
    return render_with_mask(
        camera, person, rng, image_size, fragment=fragment, hue_rotation=hue_rotation
    )[0]


def render_with_mask(camera, person, rng, image_size, *, fragment=False, hue_rotation=0.0):
    """`render`, and the boolean `[H, W]` mask of the pixels painted with the person.

    The mask marks where the person was painted, before the camera's blur, noise and the
    JPEG encoding (which smear its edge by a pixel or two); all False without a person. It
    draws nothing from `rng`: the image is the one `render` gives for the same `rng` state.
    `hue_rotation` (degrees) turns the hue of the painted scene, person and background,
    before the camera's effects (`rotate_hue`).
    """
    _, width = image_size
    shift = rng.integers(0, width)
    canvas = camera["scene"][:, shift : shift + width].copy()
    mask = np.zeros(canvas.shape[:2], dtype=bool)
    if person is not None:
        paint_person(canvas, person, rng, fragment=fragment, mask=mask)
    canvas = rotate_hue(canvas, hue_rotation)
    canvas = box_blur(canvas, camera["blur"])
    canvas = canvas * camera["gain"] * rng.uniform(0.9, 1.1) * camera["cast"]
    canvas = canvas + rng.normal(0.0, camera["noise"], size=canvas.shape)
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8), mask


def market_file_name(pid, camera, frame, box):
    """Market-1501 name `PPPP_cCsS_FFFFFF_BB.jpg`; the junk pid -1 is written `-1`."""
    pid_text = "-1" if pid == -1 else f"{pid:04d}"
    return f"{pid_text}_c{camera + 1}s1_{frame:06d}_{box:02d}.jpg"


def write_synthetic_market1501(
    directory,
    *,
    num_train_identities=32,
    num_test_identities=32,
    num_cameras=4,
    cameras_per_identity=2,
    images_per_camera=4,
    num_distractors=16,
    num_junk=8,
    image_size=(128, 64),
    seed=0,
    hue_rotation=0.0,
):
    """Writes a deterministic synthetic ReID dataset in the Market-1501 layout.

    Creates `bounding_box_train/`, `query/` and `bounding_box_test/` under `directory`,
    with JPEG files named like Market-1501 (`PPPP_cCsS_FFFFFF_BB.jpg`) so that
    `read_market1501` reads it. Training and test identities are disjoint. Each identity
    is seen by `cameras_per_identity` cameras, `images_per_camera` images each. For a test
    identity, one image per camera goes to `query/` and the others to
    `bounding_box_test/`, so every query has a match in another camera. The gallery also
    gets `num_distractors` images of other people (pid `0000`) and `num_junk` background or
    fragment images (pid `-1`, dropped by the reader). The manifest `synthetic_market1501.json`
    (the arguments, and each image's size and SHA-256) is written last;
    `verify_synthetic_market1501` checks a folder against it.

    With `T` = `num_train_identities`, `Q` = `num_test_identities`, `k` =
    `cameras_per_identity` and `n` = `images_per_camera`, the reader finds `T*k*n` training
    images, `Q*k` queries and `Q*k*(n-1) + num_distractors` gallery images.

    Example:

    >>> root = write_synthetic_market1501("/tmp/synthetic_market", seed=0)  # doctest: +SKIP
    >>> dataset = read_market1501(root)  # doctest: +SKIP
    >>> len(dataset.train), len(dataset.query), len(dataset.gallery)  # doctest: +SKIP
    (256, 64, 208)

    Args:
        directory: path-like. Output folder; created if needed. It must not already hold
            the dataset folders.
        num_train_identities: int. Training identities. Defaults to `32`.
        num_test_identities: int. Query/gallery identities. Defaults to `32`.
        num_cameras: int. Cameras, 2 to 9. Defaults to `4`.
        cameras_per_identity: int. Cameras that see each identity, 2 to `num_cameras`.
            Defaults to `2`.
        images_per_camera: int. Images of an identity per camera, at least 2. Defaults
            to `4`.
        num_distractors: int. Distractor images (pid 0) in the gallery. Defaults to `16`.
        num_junk: int. Junk images (pid -1) in the gallery. Defaults to `8`.
        image_size: tuple `(height, width)`, at least `(32, 16)`. Defaults to `(128, 64)`,
            the size of Market-1501 crops.
        seed: int. Seed of everything drawn. Defaults to `0`.
        hue_rotation: float. Degrees by which the hue of every painted scene (clothes,
            skin, backgrounds) is turned before the camera's effects: a domain shift
            between two datasets of the generator, e.g. a pre-training source task at 0 and
            a target task at 120 (other colours as well as other identities and cameras).
            Defaults to `0.0` (none).

    Returns:
        The `pathlib.Path` of `directory`.

    Raises:
        ValueError: if an argument is invalid.
        FileExistsError: if `directory` already holds one of the dataset folders.
    """
    arguments = _checked_arguments(
        num_train_identities=num_train_identities,
        num_test_identities=num_test_identities,
        num_cameras=num_cameras,
        cameras_per_identity=cameras_per_identity,
        images_per_camera=images_per_camera,
        num_distractors=num_distractors,
        num_junk=num_junk,
        image_size=image_size,
        seed=seed,
        hue_rotation=hue_rotation,
    )
    root = pathlib.Path(directory)
    folders = {name: root / name for name in SPLIT_FOLDERS}
    existing = [str(folder) for folder in folders.values() if folder.exists()]
    if existing:
        raise FileExistsError(f"Refusing to overwrite existing dataset folders: {existing}.")
    for folder in folders.values():
        os.makedirs(folder)
    for item in _generate(**arguments):
        tf.io.write_file(str(root / item.name), _encode(item.image))
    files = {name: _file_entry(root / name) for name in _image_names(root)}
    _atomic_files.write_json(root / MANIFEST, {"arguments": arguments, "files": files}, indent=1)
    return root


class SyntheticImage(NamedTuple):
    """One generated image: its name below the dataset folder, its pixels, the person's mask."""

    name: str  # "query/0001_c1s1_000012_00.jpg"
    image: np.ndarray  # uint8 [H, W, 3], before the JPEG encoding
    mask: np.ndarray  # bool [H, W]: the pixels painted with the person


def synthetic_person_masks(directory, names=None):
    """The person mask of images of a dataset written by `write_synthetic_market1501`.

    The generator is deterministic: the images are generated again from the arguments in
    the folder's manifest, with the mask of the pixels painted with the person (body,
    clothes, head, hair, accessories; before the camera's blur and noise, which smear its
    edge by a pixel or two). Each regenerated image is JPEG-encoded and compared with its
    file, byte for byte (SHA-256), so a mask is only returned for the very image on disk.

    Example:

    >>> masks = synthetic_person_masks(root, ["query/0007_c2s1_000031_00.jpg"])  # doctest: +SKIP
    >>> masks["query/0007_c2s1_000031_00.jpg"].shape  # doctest: +SKIP
    (128, 64)

    Args:
        directory: path-like. A dataset folder written by `write_synthetic_market1501`.
        names: Iterable of strings or None. Images, named by their path below `directory`
            (`"query/0007_c2s1_000031_00.jpg"`, as in the manifest), or absolute paths of
            files inside it. Defaults to `None`: every image.

    Returns:
        A dict from each name (as given) to a boolean `[H, W]` numpy array, True on the
        person. A junk background image's mask is all False.

    Raises:
        ValueError: if the folder has no readable manifest, a name is not one of its
            images, or an image generated again differs from its file (edited since, or
            written by another version of the generator or of the JPEG encoder).
    """
    root = pathlib.Path(directory)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        arguments, files = manifest["arguments"], manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"{str(root)!r} has no readable manifest {MANIFEST!r} ({e}): it is not a complete "
            "dataset of write_synthetic_market1501."
        ) from None
    wanted = {}
    for name in files if names is None else names:
        relative = _name_below(root, name)
        if relative not in files:
            raise ValueError(
                f"{name!r} is not an image of the synthetic dataset {str(root)!r} (expected a "
                f"name like {next(iter(files), 'query/<file>.jpg')!r})."
            )
        wanted[relative] = name
    arguments = {**arguments, "image_size": tuple(arguments["image_size"])}
    masks = {}
    for item in _generate(**_checked_arguments(**arguments)):
        if item.name not in wanted:
            continue
        path = root / item.name
        digest = hashlib.sha256(_encode(item.image).numpy()).hexdigest()
        if not path.is_file() or digest != _atomic_files.sha256_of_file(path):
            raise ValueError(
                f"{str(path)!r} is missing or differs from the image generated again from "
                "the manifest's arguments (edited since, or written by another version of "
                "the generator or of the JPEG encoder): its person mask is unknown."
            )
        masks[wanted[item.name]] = item.mask
        if len(masks) == len(wanted):
            break
    return masks


def _name_below(root, name):
    path = pathlib.Path(name)
    for base in (root, root.absolute()):
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            continue
    return path.as_posix()


def _encode(image):
    return tf.io.encode_jpeg(image, quality=90)


def _checked_arguments(
    *,
    num_train_identities,
    num_test_identities,
    num_cameras,
    cameras_per_identity,
    images_per_camera,
    num_distractors,
    num_junk,
    image_size,
    seed,
    hue_rotation=0.0,
):
    """The generator's arguments, validated, as the manifest records them.

    `hue_rotation` is recorded only when it is not 0, so that datasets written before it
    existed verify as they did.
    """
    check_positive_int("num_train_identities", num_train_identities)
    check_positive_int("num_test_identities", num_test_identities)
    check_positive_int("num_cameras", num_cameras, minimum=2)
    if num_cameras > MAX_CAMERAS:
        raise ValueError(
            f"Expected num_cameras <= {MAX_CAMERAS}. Received: num_cameras={num_cameras}."
        )
    check_positive_int("cameras_per_identity", cameras_per_identity, minimum=2)
    if cameras_per_identity > num_cameras:
        raise ValueError(
            f"Expected cameras_per_identity <= num_cameras={num_cameras}. "
            f"Received: cameras_per_identity={cameras_per_identity}."
        )
    check_positive_int("images_per_camera", images_per_camera, minimum=2)
    check_positive_int("num_distractors", num_distractors, minimum=0)
    check_positive_int("num_junk", num_junk, minimum=0)
    if num_train_identities + num_test_identities > 9999:
        raise ValueError(
            "Market-1501 names hold 4-digit person ids: expected at most 9999 identities. Received: "
            f"num_train_identities={num_train_identities}, num_test_identities={num_test_identities}."
        )
    if (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != 2
        or not all(isinstance(v, int) and v >= m for v, m in zip(image_size, MIN_IMAGE_SIZE))
    ):
        raise ValueError(
            f"Expected image_size=(height, width) of at least {MIN_IMAGE_SIZE}. Received: image_size={image_size!r}."
        )
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"Expected an integer seed. Received: seed={seed!r}.")
    if (
        not isinstance(hue_rotation, (int, float, np.integer, np.floating))
        or isinstance(hue_rotation, bool)
        or not np.isfinite(hue_rotation)
    ):
        raise ValueError(
            f"Expected a finite number of degrees. Received: hue_rotation={hue_rotation!r}."
        )
    shift = {"hue_rotation": float(hue_rotation)} if hue_rotation else {}
    return {
        "num_train_identities": num_train_identities,
        "num_test_identities": num_test_identities,
        "num_cameras": num_cameras,
        "cameras_per_identity": cameras_per_identity,
        "images_per_camera": images_per_camera,
        "num_distractors": num_distractors,
        "num_junk": num_junk,
        "image_size": list(image_size),
        "seed": int(seed),
        **shift,
    }


def synthetic_market1501_images(
    *,
    num_train_identities=32,
    num_test_identities=32,
    num_cameras=4,
    cameras_per_identity=2,
    images_per_camera=4,
    num_distractors=16,
    num_junk=8,
    image_size=(128, 64),
    seed=0,
    hue_rotation=0.0,
):
    """The images `write_synthetic_market1501` writes, with their person masks, in memory.

    Takes the keyword arguments of `write_synthetic_market1501` but `directory`, with the
    same defaults and checks: the same arguments give the same images.

    Example:

    >>> for item in synthetic_market1501_images(seed=0):  # doctest: +SKIP
    ...     print(item.name, item.image.shape, item.mask.mean())

    Returns:
        An iterator of `SyntheticImage(name, image, mask)` in the order they are written:
        `name` below the dataset folder (`"query/0007_c2s1_000031_00.jpg"`), the uint8
        `[H, W, 3]` image before its JPEG encoding, and the boolean `[H, W]` mask of the
        pixels painted with the person (see `render_with_mask`).

    Raises:
        ValueError: if an argument is invalid (at the call, before any image is made).
    """
    return _generate(
        **_checked_arguments(
            num_train_identities=num_train_identities,
            num_test_identities=num_test_identities,
            num_cameras=num_cameras,
            cameras_per_identity=cameras_per_identity,
            images_per_camera=images_per_camera,
            num_distractors=num_distractors,
            num_junk=num_junk,
            image_size=image_size,
            seed=seed,
            hue_rotation=hue_rotation,
        )
    )


def _generate(
    *,
    num_train_identities,
    num_test_identities,
    num_cameras,
    cameras_per_identity,
    images_per_camera,
    num_distractors,
    num_junk,
    image_size,
    seed,
    hue_rotation=0.0,
):
    """Yields every `SyntheticImage` of the dataset, in the order they are written.

    Everything is drawn from one generator seeded with `seed`, in this order; the masks draw
    nothing, so the images do not depend on whether anyone looks at them.
    """
    image_size = tuple(image_size)
    rng = np.random.default_rng(seed)
    cameras = [draw_camera(rng, image_size) for _ in range(num_cameras)]
    pids = rng.permutation(np.arange(1, num_train_identities + num_test_identities + 1))
    frames = [0] * num_cameras

    def named(folder, pid, camera, rendered, box):
        frames[camera] += int(rng.integers(1, 50))
        name = market_file_name(int(pid), camera, frames[camera], box)
        return SyntheticImage(f"{folder}/{name}", *rendered)

    for index, pid in enumerate(pids):
        person = draw_identity(rng)
        training = index < num_train_identities
        for camera in sorted(rng.choice(num_cameras, cameras_per_identity, replace=False)):
            for shot in range(images_per_camera):
                rendered = render_with_mask(
                    cameras[camera], person, rng, image_size, hue_rotation=hue_rotation
                )
                if training:
                    yield named("bounding_box_train", pid, camera, rendered, box=shot + 1)
                elif shot == 0:
                    yield named("query", pid, camera, rendered, box=0)
                else:
                    yield named("bounding_box_test", pid, camera, rendered, box=shot)
    for _ in range(num_distractors):
        camera = int(rng.integers(num_cameras))
        rendered = render_with_mask(
            cameras[camera], draw_identity(rng), rng, image_size, hue_rotation=hue_rotation
        )
        yield named("bounding_box_test", 0, camera, rendered, box=1)
    for junk in range(num_junk):
        camera = int(rng.integers(num_cameras))
        person = draw_identity(rng) if junk % 2 else None
        rendered = render_with_mask(
            cameras[camera], person, rng, image_size, fragment=True, hue_rotation=hue_rotation
        )
        yield named("bounding_box_test", -1, camera, rendered, box=1)


def verify_synthetic_market1501(directory, **arguments):
    """Checks a dataset written by `write_synthetic_market1501` against its manifest.

    Example:

    >>> problem = verify_synthetic_market1501("/tmp/synthetic_market", seed=0)  # doctest: +SKIP

    Args:
        directory: path-like. The dataset folder.
        **arguments: Arguments of `write_synthetic_market1501` the dataset must have been
            written with (those not given are not compared).

    Returns:
        `None` if the folder holds exactly the images its manifest lists, each with the
        listed size and SHA-256, written with `arguments`; otherwise a sentence saying what
        is wrong, naming the file.
    """
    root = pathlib.Path(directory)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        recorded, files = manifest["arguments"], manifest["files"]
    except FileNotFoundError:
        return f"{str(root / MANIFEST)!r} is missing (writer killed before it finished?)"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{str(root / MANIFEST)!r} is unreadable ({e})"
    wanted = {k: list(v) if isinstance(v, tuple) else v for k, v in arguments.items()}
    recorded = {"hue_rotation": 0.0, **recorded}  # Recorded only when set.
    differing = sorted(k for k, v in wanted.items() if recorded.get(k) != v)
    if differing:
        return f"{str(root)!r} was written with other arguments: {differing}"
    found = set(_image_names(root))
    missing, extra = sorted(set(files) - found), sorted(found - set(files))
    if missing or extra:
        return f"{str(root)!r} misses images {missing[:3]} or holds unlisted ones {extra[:3]}"
    for name, entry in files.items():
        if _file_entry(root / name) != entry:
            return f"{str(root / name)!r} differs from its size and SHA-256 in the manifest"
    return None


def _image_names(root):
    return sorted(
        f"{folder}/{name}"
        for folder in SPLIT_FOLDERS
        if (root / folder).is_dir()
        for name in os.listdir(root / folder)
    )


def _file_entry(path):
    return {"bytes": os.path.getsize(path), "sha256": _atomic_files.sha256_of_file(path)}
