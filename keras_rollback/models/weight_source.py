"""`WeightSource`: what a backbone's pre-trained weights are, and the folder they are kept in."""

import dataclasses
import importlib.util
import json
import os
import re

import keras
from absl import logging

from keras_rollback._atomic_files import atomic_write
from keras_rollback._atomic_files import sha256_of_file
from keras_rollback._atomic_files import write_json
from keras_rollback.models.weight_file_errors import WeightFileError
from keras_rollback.user_error import UserError

HOME_ENVIRONMENT_VARIABLE = "KERAS_ROLLBACK_HOME"
OFFLINE_ENVIRONMENT_VARIABLE = "KERAS_ROLLBACK_OFFLINE"
KINDS = ("torchvision", "keras_hub", "keras_applications")
MANIFEST = "manifest.json"
# torch.hub's convention: the file name ends with the first hex digits of the file's SHA-256.
_HASH_PREFIX = re.compile(r"-([a-f0-9]{8,64})\.[a-z]+$")


class MissingWeightsError(UserError, FileNotFoundError):
    """Pre-trained weights that are neither in the cache folder nor downloadable now.

    Its message is one paragraph naming the file, where to download it and the
    folder to put it in; scripts print it instead of a traceback.
    """


@dataclasses.dataclass(frozen=True)
class WeightSource:
    """One set of pre-trained backbone weights and exactly what it is.

    Example:

    ```python
    source = get_backbone_spec("resnet50").weight_source("resnet50", "torchvision_v1")
    source.file_name  # "resnet50-0676ba61.pth"
    source.preprocessing  # "torch"
    ```

    Args:
        name: String. The name passed as `weights=` (`"torchvision_v1"`,
            `"imagenet"`, ...).
        kind: String. How the weights are fetched: `"torchvision"` (a
            state_dict file in `weights_home()/torchvision`, converted once
            into `weights_home()/converted`), `"keras_hub"` (a keras-hub
            preset) or `"keras_applications"` (a keras.applications
            constructor's `weights="imagenet"`).
        description: String. What the weights are: who trained them, on what,
            and how they were converted.
        preprocessing: String. The input normalisation the weights expect, a
            mode of `keras_rollback.data.normalize_images`.
        file_name: String or None. The file (torchvision) or None. Defaults to
            `None`.
        url: String or None. Where the file is published. Defaults to `None`.
        sha256: String or None. The file's full SHA-256 where known; otherwise
            the hex digits that torch.hub puts at the end of the file name are
            checked. Defaults to `None`.
        top1: Float or None. Published ImageNet-1k top-1 accuracy (%), single
            224 crop. Defaults to `None`.
        recipe: String or None. The training recipe. Defaults to `None`.
        preset: String or None. keras-hub preset name. Defaults to `None`.
        equivalent_files: Tuple of strings. Other published file names holding
            the same weights (an older serialisation). Defaults to `()`.
        safetensors_file: String or None. The name under which a copy of the
            same weights as a `.safetensors` file, in torchvision's key
            layout, is kept in the cache folder: read without torch (a
            torchvision source). Defaults to `None`.
        safetensors_url: String or None. Where that copy is published.
            Defaults to `None`.
        safetensors_sha256: String or None. Its full SHA-256 where known;
            otherwise the SHA-256 of the file read is only recorded. Defaults
            to `None`.
    """

    name: str
    kind: str
    description: str
    preprocessing: str
    file_name: str | None = None
    url: str | None = None
    sha256: str | None = None
    top1: float | None = None
    recipe: str | None = None
    preset: str | None = None
    equivalent_files: tuple[str, ...] = ()
    safetensors_file: str | None = None
    safetensors_url: str | None = None
    safetensors_sha256: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Unknown weight source kind. Received: kind={self.kind!r}")
        if self.kind == "torchvision" and not (self.file_name and self.url):
            raise ValueError(f"A torchvision source needs a file_name and a url: {self.name!r}")
        if self.kind == "keras_hub" and not self.preset:
            raise ValueError(f"A keras-hub source needs a preset: {self.name!r}")
        if self.safetensors_file is not None and not (
            self.kind == "torchvision"
            and self.safetensors_file.endswith(".safetensors")
            and self.safetensors_url
        ):
            raise ValueError(
                "A safetensors copy belongs to a torchvision source and needs a '.safetensors' "
                f"file name and a url. Received: name={self.name!r}, kind={self.kind!r}, "
                f"safetensors_file={self.safetensors_file!r}, safetensors_url={self.safetensors_url!r}"
            )

    def provenance(self):
        """The record written beside results: name, kind, description, file, top-1, recipe."""
        record = {
            "weights": self.name,
            "kind": self.kind,
            "description": self.description,
            "preprocessing": self.preprocessing,
        }
        for key in ("file_name", "url", "sha256", "top1", "recipe", "preset"):
            value = getattr(self, key)
            if value is not None:
                record[key] = value
        return record


def weights_home():
    """The folder of pre-trained weight files: `$KERAS_ROLLBACK_HOME`, else `~/.keras/keras_rollback`.

    torchvision files go into its `torchvision/` folder, their Keras conversions
    into `converted/`, described by `manifest.json`. (keras.applications and
    keras-hub keep their own downloads in Keras' and Kaggle's caches.)
    """
    home = os.environ.get(HOME_ENVIRONMENT_VARIABLE)
    if home:
        return os.path.abspath(os.path.expanduser(home))
    keras_home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return os.path.abspath(os.path.expanduser(os.path.join(keras_home, "keras_rollback")))


def load_torchvision_source(backbone, source):
    """Loads a torchvision source into a keras-hub ResNet, converting the file once.

    Looks for `<home>/converted/<file stem>.weights.h5` (written by an earlier
    call and listed in the manifest) and loads it strictly; otherwise finds
    the torchvision file, or the source's safetensors copy, in
    `<home>/torchvision/` (downloading one when online, see `_weights_file`),
    checks its SHA-256, converts it with `load_torchvision_weights` and writes
    the `.weights.h5` and its manifest entry.

    Args:
        backbone: keras-hub `ResNetBackbone` of the source's architecture.
        source: `WeightSource` of kind `"torchvision"`.

    Returns:
        The provenance record (`source.provenance()` plus the file actually
        read and its SHA-256).
    """
    from keras_rollback.models.keras_weights import load_weights_strict
    from keras_rollback.models.torchvision_weights import load_torchvision_weights

    home = weights_home()
    manifest = _read_manifest(home)
    for file_name in _file_names(source):
        entry = manifest.get(file_name)
        converted = os.path.join(home, "converted", _converted_name(file_name))
        if entry and os.path.isfile(converted):
            load_weights_strict(backbone, converted)
            logging.info("Loaded %s (converted from %s).", converted, file_name)
            return _record(source, entry)
    path = _weights_file(source, home)
    file_name = os.path.basename(path)
    digest = _checked_sha256(path, source)
    load_torchvision_weights(backbone, path)
    converted = os.path.join(home, "converted", _converted_name(file_name))
    atomic_write(converted, backbone.save_weights, suffix=".weights.h5")
    entry = {
        "file": file_name,
        "sha256": digest,
        "converted": os.path.relpath(converted, home),
        "keras_version": keras.__version__,
    }
    manifest[file_name] = entry
    _write_manifest(home, manifest)
    logging.info("Converted %s into %s (SHA-256 %s).", path, converted, digest)
    return _record(source, entry)


def torchvision_provenance(source):
    """`source.provenance()` with the file that will be read and its SHA-256.

    Read from the manifest once the file was converted; otherwise the file is
    found (or downloaded, or a `MissingWeightsError` raised) and checked.
    """
    home = weights_home()
    manifest = _read_manifest(home)
    for file_name in _file_names(source):
        converted = os.path.join(home, "converted", _converted_name(file_name))
        if file_name in manifest and os.path.isfile(converted):
            return _record(source, manifest[file_name])
    path = _weights_file(source, home)
    entry = {"file": os.path.basename(path), "sha256": _checked_sha256(path, source)}
    return _record(source, entry)


def missing_weights_message(file_name, url, folder, reason=None, alternative=None):
    """The one-paragraph error of a weight file that is not available.

    Args:
        file_name: String. The file looked for, under this name in `folder`.
        url: String. Where it is published.
        folder: String. The cache folder it belongs in.
        reason: String or None. Why it could not be downloaded. Defaults to
            `None`.
        alternative: Tuple `(file_name, url, what)` or None. Another file
            holding the same weights, and what it is. Defaults to `None`.
    """
    because = f" ({reason})" if reason else ""
    message = (
        f"Pre-trained weights file {file_name!r} is not in {folder} and could not be "
        f"downloaded{because}. Download it from {url} (on any machine with internet access) and "
        f"save it in {folder} under that name"
    )
    if alternative is not None:
        other_name, other_url, what = alternative
        message += f", or save {other_url} there as {other_name!r} ({what})"
    return message + (
        f"; set {HOME_ENVIRONMENT_VARIABLE} to use another folder than "
        f"{os.path.dirname(folder)}. The file is converted to Keras on first use and cached there."
    )


def _file_names(source):
    """Every file name the source's weights are kept under: torchvision's, then the safetensors copy."""
    names = (source.file_name, *source.equivalent_files, source.safetensors_file)
    return tuple(name for name in names if name)


def _weights_file(source, home):
    """A file of the source in `<home>/torchvision` that can be read here, downloaded if need be.

    torchvision's `.pth` files need torch to be read; the safetensors copy only
    the safetensors package. With torch importable, a cached `.pth` is read
    first (the published file the authors used), then the safetensors copy,
    and the `.pth` is downloaded when neither is there. Without torch only the
    safetensors copy is read or downloaded.
    """
    folder = os.path.join(home, "torchvision")
    torch_found = importlib.util.find_spec("torch") is not None
    pickled = (source.file_name, *source.equivalent_files)
    copy = (source.safetensors_file,) if source.safetensors_file else ()
    readable = pickled + copy if torch_found or not copy else copy
    for file_name in readable:
        path = os.path.join(folder, file_name)
        if os.path.isfile(path):
            return path
    # Where each file is published, and what it is, for the download and the error.
    routes = {source.file_name: (source.url, "torchvision's own file, read with torch")}
    if copy:
        routes[source.safetensors_file] = (
            source.safetensors_url,
            "the same weights as safetensors, in torchvision's key layout, read without torch",
        )
    download = readable[0]
    if os.environ.get(OFFLINE_ENVIRONMENT_VARIABLE, "").lower() in ("1", "true", "yes"):
        reason = f"{OFFLINE_ENVIRONMENT_VARIABLE} is set"
    else:
        try:
            os.makedirs(folder, exist_ok=True)
            return keras.utils.get_file(
                download, routes[download][0], cache_dir=home, cache_subdir="torchvision"
            )
        except Exception as e:  # keras.utils.get_file raises a bare Exception offline.
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    unreadable = [
        n for n in pickled if n not in readable and os.path.isfile(os.path.join(folder, n))
    ]
    if unreadable:
        reason += f"; {unreadable[0]!r} is there, but reading a .pth file needs torch"
    other = next((name for name in routes if name != download), None)
    alternative = (other, *routes[other]) if other else None
    raise MissingWeightsError(
        missing_weights_message(download, routes[download][0], folder, reason, alternative)
    )


def _checked_sha256(path, source):
    """The file's SHA-256, checked against the pinned one or the digits in its name where known."""
    digest = sha256_of_file(path)
    file_name = os.path.basename(path)
    if file_name == source.safetensors_file:
        expected, url = source.safetensors_sha256, source.safetensors_url
    else:
        expected, url = source.sha256 if file_name == source.file_name else None, source.url
    if expected is None:
        match = _HASH_PREFIX.search(file_name)
        expected = match.group(1) if match else ""
    if not expected:
        logging.info("No published SHA-256 for %s: recording %s.", file_name, digest)
    if not digest.startswith(expected):
        raise WeightFileError(
            f"Weight file {path!r} is not {source.description}: its SHA-256 is {digest}, expected "
            f"one starting with {expected} (a partial download or another file under this name). "
            f"Download it again from {url}."
        )
    return digest


def _record(source, entry):
    """The provenance of the file read: the safetensors copy gives its own name and url."""
    record = {**source.provenance(), **entry}
    if entry["file"] == source.safetensors_file:
        record.update(file_name=source.safetensors_file, url=source.safetensors_url)
    return record


def _converted_name(file_name):
    return os.path.splitext(file_name)[0] + ".weights.h5"


def _read_manifest(home):
    path = os.path.join(home, MANIFEST)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _write_manifest(home, manifest):
    write_json(os.path.join(home, MANIFEST), manifest, indent=1, sort_keys=True)
