"""SimCLR and MoCo v2 in TensorFlow/Keras: each training step one ``tf.function`` (MoCo's queue
and momentum encoder included).

The same modules under the same names as ``torch_impl``; ``python -m tf_impl train`` trains
SimCLR unless ``--method moco`` is given, as ``python -m torch_impl train`` does.

In a process that also uses PyTorch, import torch and torchvision *before* this package.
"""
