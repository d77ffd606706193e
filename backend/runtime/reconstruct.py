"""From an observation to a mesh in the source's frame on the built-in runtime: what the runtime worker and
`evaluate --engine runtime` both run, as `backend.api.Model` does for PyTorch."""

from __future__ import annotations

from ..inputs import Observation
from ..inputs.network import network_input
from ..latent import Latent, check_latent
from ..mesh import Mesh
from .evaluate import CancelCheck, Progress
from .extract import ExtractOptions, ExtractStats, extract_mesh
from .model import RuntimeModel


def encode(model: RuntimeModel, observation: Observation) -> Latent:
    """The latent of an observation of the model's input kind (`as_observation` checks it), with the frame
    that maps results back."""
    array, frame = network_input(observation, model.config)
    return Latent(model.encode(array), model.name, frame)


def extract(
    model: RuntimeModel,
    latent: Latent,
    options: ExtractOptions,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
    stats: ExtractStats | None = None,
) -> tuple[Mesh, ExtractStats]:
    """The latent's mesh in its source's frame; a latent of another model is refused."""
    check_latent(latent, model.name, model.latent_shape)
    mesh, stats = extract_mesh(model.field(latent.code), options, progress, cancel, stats)
    return mesh.transformed(latent.frame.as_array(), latent.frame.scale), stats
