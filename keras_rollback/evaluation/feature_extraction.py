"""Feature extraction for ReID evaluation: flip test-time augmentation, L2 normalisation."""

import numpy as np
from keras import ops
from keras import utils

from keras_rollback.fit_verbosity import fit_verbosity
from keras_rollback.metrics._validation import to_numpy as _to_numpy

BATCH_KEYS = ("image", "pid", "path")  # and "camid", unless the dataset has no cameras


def _num_batches(dataset):
    if hasattr(dataset, "cardinality"):
        cardinality = int(dataset.cardinality())
        return cardinality if cardinality >= 0 else None
    try:
        return len(dataset)
    except TypeError:
        return None


def _predict(feature_model, images):
    # A Keras model's compiled predict step (one trace per batch shape); any other callable
    # is called eagerly.
    if hasattr(feature_model, "predict_on_batch"):
        return np.asarray(feature_model.predict_on_batch(images))
    return np.asarray(ops.convert_to_numpy(feature_model(images, training=False)))


def _non_finite_images(values, paths):
    """The paths of the images whose rows of `values` hold NaN or infinity (a string), or "".

    `values` has one row per image of the batch, then (with flip) one per flipped copy.
    """
    finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if finite.all():
        return ""
    bad = sorted({int(row) % len(paths) for row in np.flatnonzero(~finite)})
    names = ", ".join(repr(str(paths[i])) for i in bad[:3])
    return f"{len(bad)} of the {len(paths)} images ({names}{', ...' if len(bad) > 3 else ''})"


def extract_features(feature_model, dataset, *, flip=True, normalize=True, verbose=1):
    """Compute one feature vector per image of a ReID dataset.

    Each batch goes through `feature_model` once, concatenated with its horizontally
    flipped copy, and the image's feature is `f(x) + f(flip(x))`, then L2-normalised: the
    test feature of the rolling-back authors' code.

    Example:

    ```python
    gallery = extract_features(feature_model, gallery_ds)
    gallery["features"].shape  # (num_images, feature_dim)
    ```

    Args:
        feature_model: Keras model (or callable accepting `training=False`) mapping images
            `[B, H, W, 3]` to features `[B, ...]`; extra dimensions are flattened.
        dataset: Iterable of dict batches `{"image": float32 [B, H, W, 3], "pid": int [B],
            "camid": int [B], "path": string [B]}`, e.g. a `tf.data.Dataset`; `camid`
            may be absent from every batch (a dataset without cameras).
        flip: Bool. Add the features of the horizontally flipped images. Defaults to `True`.
        normalize: Bool. L2-normalise each feature. Defaults to `True`.
        verbose: Int. 1 shows a `keras.utils.Progbar`, 0 is silent. Defaults to `1`.

    Returns:
        Dict of numpy arrays: `"features"` float32 `(N, D)`, `"pid"` and `"camid"` int64
        `(N,)` (`"camid"` None without cameras), `"path"` str `(N,)`, in dataset order.

    Raises:
        FloatingPointError: `feature_model` gave a NaN or infinite feature for a finite
            image: the error names the model, the batch and the images, so a model gone
            wrong is caught here and not as non-finite distances in the metrics.
        ValueError: A batch of `dataset` is malformed or holds non-finite pixels.
    """
    if verbose not in (0, 1):
        raise ValueError(f"Received: verbose={verbose!r}. Expected 0 or 1.")
    # A redrawn bar on a terminal, one line at the end in a file (fit_verbosity).
    progbar = (
        utils.Progbar(_num_batches(dataset), unit_name="batch", verbose=fit_verbosity())
        if verbose
        else None
    )
    features, pids, camids, paths = [], [], [], []
    has_cameras = True  # set by batch 0
    for step, batch in enumerate(dataset):
        if not isinstance(batch, dict) or any(key not in batch for key in BATCH_KEYS):
            keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise ValueError(
                f"Batch {step} of `dataset` must be a dict with keys {BATCH_KEYS}. Received: {keys}."
            )
        images = _to_numpy(batch["image"]).astype(np.float32)
        if images.ndim != 4:
            raise ValueError(
                f"Batch {step}: `image` must be [B, H, W, C]. Received shape {images.shape}."
            )
        batch_size = len(images)
        batch_paths = np.array(
            [
                p.decode() if isinstance(p, bytes) else str(p)
                for p in _to_numpy(batch["path"]).ravel()
            ]
        )
        if len(batch_paths) != batch_size:
            raise ValueError(
                f"Batch {step} of `dataset` has {len(batch_paths)} paths for {batch_size} images."
            )
        bad_images = _non_finite_images(images, batch_paths)
        if bad_images:
            raise ValueError(f"Batch {step} of `dataset`: NaN or infinite pixels in {bad_images}.")
        if flip:
            images = np.concatenate([images, images[:, :, ::-1]], axis=0)
        output = _predict(feature_model, images).reshape(len(images), -1).astype(np.float64)
        bad_features = _non_finite_images(output, batch_paths)
        if bad_features:
            # Caught here, where they arise, not later as NaN distances in the metrics.
            raise FloatingPointError(
                f"Model {getattr(feature_model, 'name', feature_model)!r} gave NaN or "
                f"infinite features for {bad_features}{' or their flipped copies' if flip else ''} "
                f"of batch {step}, whose pixels are finite: its weights diverged, or it computes in "
                "bfloat16 on a CPU whose oneDNN bfloat16 kernels give NaN (see "
                "docs/mixed_precision.md)."
            )
        if flip:
            output = output[:batch_size] + output[batch_size:]
        if normalize:
            output = output / np.maximum(np.linalg.norm(output, axis=1, keepdims=True), 1e-12)
        features.append(output.astype(np.float32))
        pids.append(_to_numpy(batch["pid"]).astype(np.int64).reshape(-1))
        if step == 0:
            has_cameras = "camid" in batch
        if ("camid" in batch) != has_cameras:
            raise ValueError(
                f"Batch {step} of `dataset` {'lacks' if has_cameras else 'has'} `camid` "
                "unlike batch 0: give camera ids in every batch or in none."
            )
        if has_cameras:
            camids.append(_to_numpy(batch["camid"]).astype(np.int64).reshape(-1))
        paths.append(batch_paths)
        if progbar is not None:
            progbar.update(step + 1)
    if not features:
        raise ValueError(
            "`dataset` yielded no batch; there are no images to extract features from."
        )
    return {
        "features": np.concatenate(features),
        "pid": np.concatenate(pids),
        "camid": np.concatenate(camids) if has_cameras else None,
        "path": np.concatenate(paths),
    }
