"""The tiny-model fixtures (tests/tiny.py)."""

from tests.tiny import tiny_host, tiny_model_dir

__all__ = ["tiny_host", "tiny_model_dir"]
