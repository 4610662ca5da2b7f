"""rdcae: pseudo-supervised surface defect detection with robust deep convolutional autoencoders."""

__version__ = "0.1.0"
