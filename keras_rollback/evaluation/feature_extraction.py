"""Feature extraction for ReID evaluation: flip test-time augmentation, L2 normalisation."""

import numpy as np
from keras import ops
from keras import utils

BATCH_KEYS = ("image", "pid", "camid", "path")


def _to_numpy(value):
    # tf.data yields tf.Tensors (strings included) whatever the Keras backend.
    if hasattr(value, "numpy"):
        return value.numpy()
    return np.asarray(ops.convert_to_numpy(value) if not isinstance(value, (list, tuple, np.ndarray)) else value)


def _num_batches(dataset):
    if hasattr(dataset, "cardinality"):
        cardinality = int(dataset.cardinality())
        return cardinality if cardinality >= 0 else None
    try:
        return len(dataset)
    except TypeError:
        return None


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
            "camid": int [B], "path": string [B]}`, e.g. a `tf.data.Dataset`.
        flip: Bool. Add the features of the horizontally flipped images. Defaults to `True`.
        normalize: Bool. L2-normalise each feature. Defaults to `True`.
        verbose: Int. 1 shows a `keras.utils.Progbar`, 0 is silent. Defaults to `1`.

    Returns:
        Dict of numpy arrays: `"features"` float32 `(N, D)`, `"pid"` and `"camid"` int64
        `(N,)`, `"path"` str `(N,)`, in dataset order.
    """
    if verbose not in (0, 1):
        raise ValueError(f"Received: verbose={verbose!r}. Expected 0 or 1.")
    progbar = utils.Progbar(_num_batches(dataset), unit_name="batch") if verbose else None
    features, pids, camids, paths = [], [], [], []
    for step, batch in enumerate(dataset):
        if not isinstance(batch, dict) or any(key not in batch for key in BATCH_KEYS):
            keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise ValueError(
                f"Batch {step} of `dataset` must be a dict with keys {BATCH_KEYS}. Received: {keys}."
            )
        images = ops.convert_to_tensor(_to_numpy(batch["image"]), dtype="float32")
        if len(images.shape) != 4:
            raise ValueError(
                f"Batch {step}: `image` must be [B, H, W, C]. Received shape {tuple(images.shape)}."
            )
        batch_size = int(images.shape[0])
        if flip:
            images = ops.concatenate([images, ops.flip(images, axis=2)], axis=0)
        output = ops.reshape(feature_model(images, training=False), (int(images.shape[0]), -1))
        if flip:
            output = output[:batch_size] + output[batch_size:]
        if normalize:
            output = output / ops.maximum(ops.norm(output, axis=1, keepdims=True), 1e-12)
        features.append(ops.convert_to_numpy(output).astype(np.float32))
        pids.append(_to_numpy(batch["pid"]).astype(np.int64).reshape(-1))
        camids.append(_to_numpy(batch["camid"]).astype(np.int64).reshape(-1))
        paths.append(np.array([p.decode() if isinstance(p, bytes) else str(p) for p in _to_numpy(batch["path"]).reshape(-1)]))
        if progbar is not None:
            progbar.update(step + 1)
    if not features:
        raise ValueError("`dataset` yielded no batch; there are no images to extract features from.")
    return {
        "features": np.concatenate(features),
        "pid": np.concatenate(pids),
        "camid": np.concatenate(camids),
        "path": np.concatenate(paths),
    }
