"""Looking up the registered backbone families (importing it registers the built-in ones)."""

# The built-in families register themselves on import; they must be in before any lookup.
from keras_rollback.models import backbone_presets  # noqa: F401
from keras_rollback.models import backbone_spec


def backbone_specs():
    """Every registered `BackboneSpec`, in registration order."""
    return backbone_spec.registered_specs()


def backbone_architectures():
    """Every registered architecture name, in registration order."""
    return tuple(dict.fromkeys(a for spec in backbone_specs() for a in spec.architectures))


def get_backbone_spec(arch, source=None):
    """The family that builds `arch` from `source` (None: the first registered with `arch`).

    Args:
        arch: String. An architecture, e.g. `"resnet50"`.
        source: String or None. `"keras_hub"`, `"keras_applications"` or None.
            Defaults to `None`.

    Returns:
        A `BackboneSpec`.
    """
    specs = [s for s in backbone_specs() if arch in s.architectures]
    if not specs:
        raise ValueError(
            f"Unknown backbone. Received: arch={arch!r}. Expected one of {list(backbone_architectures())}."
        )
    if source is None:
        return specs[0]
    if source not in backbone_spec.SOURCES:
        raise ValueError(
            f"Unknown backbone source. Received: source={source!r}. Expected one of {list(backbone_spec.SOURCES)}."
        )
    for spec in specs:
        if spec.source == source:
            return spec
    others = sorted(
        a for s in backbone_specs() if s.source == source for a in s.architectures if "resnet" in a
    )
    library = "keras-hub" if source == "keras_hub" else "keras.applications"
    raise ValueError(
        f"{library} has no {arch} (its ResNets: {others}). Received: arch={arch!r}, "
        f"source={source!r}; use source={specs[0].source!r}."
    )


def find_backbone(model, **options):
    """The first registered family found in `model` and its rule blocks (`{}`: by resolution).

    Args:
        model: `keras.Model`.
        **options: Partition options (`layer_groups=4`) for the families
            whose `block_options` name them; the others ignore them.

    Returns:
        `(spec, blocks)`, or `(None, None)` when no family is found.
    """
    paths = [w.path for w in model.weights]
    for spec in backbone_specs():
        accepted = {k: v for k, v in options.items() if k in spec.block_options}
        blocks = spec.find_blocks(model, paths, **accepted)
        if blocks is not None:
            return spec, blocks
    return None, None
