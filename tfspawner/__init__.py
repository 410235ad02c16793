"""tfspawner: a JupyterHub spawner for TensorFlow 2.9 Jupyter images."""

from .spawner import TFSpawner

__all__ = ["TFSpawner"]
__version__ = "0.1.0"
