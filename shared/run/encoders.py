"""The encoder names both frameworks build, and the line ``train --help`` shows for them.

``torch_impl.models.ENCODERS`` and ``tf_impl.models.ENCODERS`` hold the same names
(``tests/test_encoders.py``); the configuration checks ``--encoder`` against this tuple without
importing either framework.

``SIMCLR_RESNETS``: google-research/simclr's ResNets (``torch_impl.simclr_resnet``,
``tf_impl.simclr_resnet``), ``simclr_r<depth>_<width>x_sk<0|1>``, depth 50, 101 or 152, width
1x to 4x, with or without selective kernels, as its checkpoints name them (``r152_3x_sk1``).
ResNet-50 1x without selective kernels is ``resnet50_samepool`` (torchvision's layer order).
"""

SIMCLR_DEPTHS = (50, 101, 152)
SIMCLR_WIDTHS = (1, 2, 3, 4)


def simclr_encoder(depth: int, width: int, sk: bool) -> str:
    """The encoder name of google-research/simclr's ResNet-<depth> <width>x (``sk``: with
    selective kernels): ``resnet50_samepool`` for r50_1x_sk0, else ``simclr_r<d>_<w>x_sk<0|1>``."""
    if (depth, width, sk) == (50, 1, False):
        return "resnet50_samepool"
    return f"simclr_r{depth}_{width}x_sk{int(sk)}"


SIMCLR_RESNETS = {
    simclr_encoder(d, w, sk): (d, w, sk)
    for d in SIMCLR_DEPTHS
    for w in SIMCLR_WIDTHS
    for sk in (False, True)
    if (d, w, sk) != (50, 1, False)
}  # name -> (depth, width, selective kernels)

ENCODER_NAMES = (
    "small_cnn",
    "resnet18_cifar",
    "resnet18",
    "resnet50_cifar",
    "resnet50",
    "resnet50_samepool",
    *SIMCLR_RESNETS,
)

ENCODER_HELP = (
    "small_cnn, resnet18_cifar, resnet18, resnet50, resnet50_cifar or resnet50_samepool "
    "(ImageNet stem with TF's \"SAME\" max-pool, as SimCLR's checkpoints), or "
    "simclr_r<50|101|152>_<1-4>x_sk<0|1> (SimCLR's ResNets: depth, width, selective kernels)"
)
