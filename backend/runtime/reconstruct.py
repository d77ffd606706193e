"""From an observation to a mesh in the source's frame on the built-in runtime: what the runtime worker and
`evaluate --engine runtime` both run, as `backend.api.Model` does for PyTorch."""

from __future__ import annotations

from ..inputs import Observation
from ..inputs.attention import PointAttentionInput
from ..inputs.network import network_input
from ..latent import Latent, check_latent
from ..mesh import Mesh
from .evaluate import CancelCheck, Logits, Progress
from .extract import ExtractOptions, ExtractStats, extract_mesh
from .model import RuntimeModel


def encode(model: RuntimeModel, observation: Observation) -> Latent:
    """The latent of an observation of the model's input kind (`as_observation` checks it), with the frame
    that maps results back."""
    prepared, frame = network_input(observation, model.config)
    if isinstance(prepared, PointAttentionInput):
        return Latent(model.encode(prepared), model.name, frame, blends_by_field=True, source=prepared.summary())
    return Latent(model.encode(prepared), model.name, frame)


def extract(
    model: RuntimeModel,
    latent: Latent,
    options: ExtractOptions,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
    stats: ExtractStats | None = None,
) -> tuple[Mesh, ExtractStats]:
    """The latent's mesh in its source's frame; a latent of another model is refused."""
    check_latent(latent, model.name, model.config)
    mesh, stats = extract_mesh(latent_field(model, latent), options, progress, cancel, stats)
    return mesh.transformed(latent.frame.as_array(), latent.frame.scale), stats


def latent_field(model: RuntimeModel, latent: Latent) -> Logits:
    """The latent's logits: its own code's, or for a blend of fields the weighted sum of its parts'."""
    if not latent.parts:
        return model.field(latent.code)
    fields = [(weight, model.field(part.code)) for weight, part in latent.parts]
    return lambda points: sum(weight * field(points) for weight, field in fields)
