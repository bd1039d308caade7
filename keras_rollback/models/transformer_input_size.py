"""A keras-hub ViT / DeiT preset at another input size: its position embedding resampled.

keras-hub's ViT and DeiT presets load only at their own square size (224x224, 384x384):
their position embedding has one row per patch of that grid and is never resized. ReID
trains at 256x128. `build_transformer_at_size` builds the preset at its own size, builds
the same architecture at the requested size, and copies every weight over, resampling the
patch rows of the position embedding bicubically from the preset's grid (14x14) to the new
one (16x8); the rows of the class (and distillation) tokens are copied as they are. This is
timm's `resample_abs_pos_embed` (TransReID loads ImageNet ViTs at 256x128 this way); keras'
bicubic kernel (a=-0.5) differs slightly from torch's (a=-0.75). DINOv2 interpolates its
position embedding itself (square inputs only).
"""

import math

import keras
import numpy as np

from keras_rollback.models import backbone_registry

RESIZABLE_FAMILIES = ("keras_hub_vit", "keras_hub_deit")


def preset_resize_needed(arch, weights, source, input_shape):
    """The preset's side if `weights` is a ViT/DeiT keras-hub preset of another input size.

    Returns:
        The preset's image side (int), or None when the backbone builds as it is.
    """
    if not isinstance(arch, str) or not isinstance(weights, str):
        return None
    from keras_rollback.models.backbone_presets import _TRANSFORMER_PRESET_SIZE

    spec = backbone_registry.get_backbone_spec(arch, source)
    named = spec.weights.get(arch, {}).get(weights)
    if spec.family not in RESIZABLE_FAMILIES or named is None or named.kind != "keras_hub":
        return None
    size = _TRANSFORMER_PRESET_SIZE.get(named.preset)
    height, width = tuple(input_shape)[:2]
    if size is None or height is None or width is None or (height, width) == (size, size):
        return None
    return size


def build_transformer_at_size(arch, weights, source, input_shape, size):
    """The preset `weights` of `arch` (loaded at `size`x`size`) rebuilt at `input_shape`.

    Raises the preset's `MissingWeightsError` when it cannot be loaded (offline).
    """
    from keras_rollback.models.backbones import build_backbone

    pretrained = build_backbone(
        arch, weights=weights, source=source, input_shape=(size, size, input_shape[2])
    )
    target = build_backbone(arch, weights=None, source=source, input_shape=tuple(input_shape))
    transfer_weights(pretrained, target)
    return target


def transfer_weights(source_backbone, target_backbone):
    """Copies every weight of a ViT/DeiT backbone into the same one at another input size.

    Weights are matched in order (the same architecture lists them alike) and must have
    equal shapes, except the position embedding, which is resampled (`resample_position_embedding`).
    """
    sources, targets = source_backbone.weights, target_backbone.weights
    if len(sources) != len(targets):
        raise ValueError(
            f"{source_backbone.name!r} and {target_backbone.name!r} are not the same "
            f"architecture: {len(sources)} and {len(targets)} weights."
        )
    old_grid = _grid(source_backbone)
    new_grid = _grid(target_backbone)
    for source, target in zip(sources, targets):
        value = keras.ops.convert_to_numpy(source)
        if tuple(source.shape) != tuple(target.shape):
            if "position_embedding" not in source.path:
                raise ValueError(
                    f"Weight {source.path!r} has shape {tuple(source.shape)} here and "
                    f"{tuple(target.shape)} at the new size: only the position embedding can "
                    "be resampled."
                )
            value = resample_position_embedding(value, old_grid, new_grid)
        target.assign(value)


def resample_position_embedding(embedding, old_grid, new_grid):
    """Bicubic resampling of the patch rows of a position embedding (timm's way).

    Args:
        embedding: Array `(tokens, dim)` or `(1, tokens, dim)`: the prefix tokens' rows (class,
            distillation) first, then one row per patch of `old_grid`, row-major.
        old_grid: `(rows, columns)` of patches the embedding was trained for.
        new_grid: `(rows, columns)` of patches at the new input size.

    Returns:
        The array `(prefix + rows * columns, dim)` (or with the leading 1 kept).
    """
    embedding = np.asarray(embedding, "float32")
    batched = embedding.ndim == 3
    rows = embedding[0] if batched else embedding
    prefix = rows.shape[0] - math.prod(old_grid)
    if prefix < 0:
        raise ValueError(
            f"A position embedding of {rows.shape[0]} rows has no {old_grid} grid of patches."
        )
    grid = rows[prefix:].reshape(1, *old_grid, rows.shape[1])
    resized = keras.ops.image.resize(
        grid, tuple(new_grid), interpolation="bicubic", antialias=False, data_format="channels_last"
    )
    resized = keras.ops.convert_to_numpy(resized).reshape(-1, rows.shape[1])
    out = np.concatenate([rows[:prefix], resized], axis=0)
    return out[None] if batched else out


def _grid(backbone):
    height, width = backbone.input_shape[1:3]
    patch = backbone.patch_size  # An int, or (rows, columns) in ViTBackbone.
    rows, columns = patch if isinstance(patch, (tuple, list)) else (patch, patch)
    return (height // rows, width // columns)
