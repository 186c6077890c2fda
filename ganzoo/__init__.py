"""ganzoo: a plugin-based GAN zoo for PyTorch.

Importing the package is cheap: it imports no torch and no plugin.
"""

__version__ = "0.1.0"
