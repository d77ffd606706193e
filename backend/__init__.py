"""OccNet backend: conditional Occupancy Networks, MISE mesh extraction, the CLI and the add-on's worker.

The API is imported lazily so that `backend.protocol` stays importable without torch (the add-on uses it).
"""

__version__ = "0.1.0"

_API = ("Latent", "Model", "Reconstruction", "interpolate", "load_model")
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'backend' has no attribute {name!r}")
