"""Lesson 07, CNN Basics, as a package: models, NumPy convolution, data, trainer and figures."""

__version__ = "0.1.0"
