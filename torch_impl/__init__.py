"""SimCLR in PyTorch: augmentations, encoders, projection head, NT-Xent, training, evaluation.

Import torch (and torchvision) before TensorFlow in any process that uses both.
"""
