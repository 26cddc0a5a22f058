"""upt: Universal Physics Transformer-style neural PDE surrogates and their benchmarking pipeline."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("upt")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
