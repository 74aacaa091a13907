"""SimCLR and MoCo v2 in PyTorch: augmentations, encoders, heads, losses, training, evaluation.

The same modules under the same names as ``tf_impl``; ``python -m torch_impl train`` trains
SimCLR unless ``--method moco`` is given, as ``python -m tf_impl train`` does.

Import torch (and torchvision) before TensorFlow in any process that uses both.
"""
