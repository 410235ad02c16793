"""tfspawner: a JupyterHub spawner for TensorFlow 2.9 Jupyter images.

This package is the spawner's entry point: importing it installs the hub
hooks (start-up checks, the GPU API), which do nothing unless the hub's
spawner is TFSpawner.
"""

from . import hub
from .spawner import TFSpawner

hub.install()

__all__ = ["TFSpawner"]
__version__ = "0.1.0"
