"""Training module: the tutorial's regular and separable VGG classifiers for CIFAR-10.

Importing the package imports nothing heavy: Keras and TensorFlow load with the modules that
need them (``training.architectures``, ``training.export``).
"""
