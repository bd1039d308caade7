"""keras-hub `ResNetBackbone`s with torchvision's ResNet v1.5 layout (the authors' ResNets)."""

# torchvision's ResNet v1.5 configurations: block type and blocks per stage.
RESNET_CONFIGS = {
    "resnet18": ("basic_block", (2, 2, 2, 2)),
    "resnet34": ("basic_block", (3, 4, 6, 3)),
    "resnet50": ("bottleneck_block", (3, 4, 6, 3)),
    "resnet101": ("bottleneck_block", (3, 4, 23, 3)),
    "resnet152": ("bottleneck_block", (3, 8, 36, 3)),
}
RESNET_WIDTHS = (64, 128, 256, 512)


def keras_hub_resnet(
    arch,
    *,
    input_shape=(None, None, 3),
    last_stride=2,
    widths=RESNET_WIDTHS,
    blocks=None,
    name=None,
):
    """A randomly initialised keras-hub `ResNetBackbone` with torchvision's configuration.

    Args:
        arch: String. A ResNet of `RESNET_CONFIGS`; its block type is used,
            and its blocks per stage unless `blocks` is given.
        input_shape: Tuple. Input shape without the batch size. Defaults to
            `(None, None, 3)`.
        last_stride: 1 or 2. Stride of the last stage. Defaults to `2`.
        widths: Tuple of 4 integers. Base width of each stage (keras-hub
            requires 64 for the first); reduced widths give small test
            models. Defaults to `(64, 128, 256, 512)`.
        blocks: Tuple of 4 integers or None. Blocks per stage. Defaults to
            `None` (those of `arch`).
        name: String or None. Model name. Defaults to `"<arch>_backbone"`.

    Returns:
        A `keras_hub.models.ResNetBackbone`.
    """
    if arch not in RESNET_CONFIGS:
        raise ValueError(
            f"Unknown ResNet. Received: arch={arch!r}. Expected one of {list(RESNET_CONFIGS)}."
        )
    block_type, default_blocks = RESNET_CONFIGS[arch]
    blocks = default_blocks if blocks is None else tuple(blocks)
    for label, values in (("widths", widths), ("blocks", blocks)):
        if len(values) != 4 or not all(isinstance(v, int) and v > 0 for v in values):
            raise ValueError(f"`{label}` must be 4 positive integers. Received: {label}={values!r}")
    keras_hub = import_keras_hub()
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=list(widths),
        stackwise_num_blocks=list(blocks),
        stackwise_num_strides=[1, 2, 2, last_stride],
        block_type=block_type,
        use_pre_activation=False,
        image_shape=input_shape,
        name=name or f"{arch}_backbone",
    )


def import_keras_hub():
    try:
        import keras_hub
    except ImportError as e:
        raise ImportError(
            "ResNet backbones with torchvision's layout need keras-hub (a dependency of keras-rollback): `pip install keras-hub`."
        ) from e
    return keras_hub
