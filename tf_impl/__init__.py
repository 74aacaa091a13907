"""MoCo v2 in TensorFlow: queue and momentum encoder inside ``tf.function``.

In a process that also uses PyTorch, import torch and torchvision *before* this package.
"""
