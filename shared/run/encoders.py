"""The encoder names both frameworks build, and the line ``train --help`` shows for them.

``torch_impl.models.ENCODERS`` and ``tf_impl.models.ENCODERS`` hold the same names
(``tests/test_encoders.py``); the configuration checks ``--encoder`` against this tuple without
importing either framework.
"""

ENCODER_NAMES = (
    "small_cnn",
    "resnet18_cifar",
    "resnet18",
    "resnet50_cifar",
    "resnet50",
    "resnet50_samepool",
)

ENCODER_HELP = (
    "small_cnn, resnet18_cifar, resnet18, resnet50, resnet50_cifar or resnet50_samepool "
    "(ImageNet stem with TF's \"SAME\" max-pool, as SimCLR's checkpoints)"
)
