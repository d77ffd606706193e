"""The paper's occupancy decoder: ResNet blocks whose batch norms are conditioned on the latent code."""

import torch
import torch.nn.functional as F
from torch import nn


class ConditionalBatchNorm(nn.Module):
    """Batch norm over (batch, points) whose scale and shift are predicted from the code c."""

    def __init__(self, c_dim: int, features: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.gamma = nn.Linear(c_dim, features)
        self.beta = nn.Linear(c_dim, features)
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))
        self.momentum = momentum
        nn.init.zeros_(self.gamma.weight)
        nn.init.ones_(self.gamma.bias)
        nn.init.zeros_(self.beta.weight)
        nn.init.zeros_(self.beta.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        batch, points, features = x.shape
        normed = F.batch_norm(
            x.reshape(batch * points, features),
            self.running_mean,
            self.running_var,
            training=self.training,
            momentum=self.momentum,
        ).view(batch, points, features)
        return self.gamma(c).unsqueeze(1) * normed + self.beta(c).unsqueeze(1)


class ConditionalResnetBlock(nn.Module):
    def __init__(self, c_dim: int, hidden: int) -> None:
        super().__init__()
        self.bn_0 = ConditionalBatchNorm(c_dim, hidden)
        self.bn_1 = ConditionalBatchNorm(c_dim, hidden)
        self.fc_0 = nn.Linear(hidden, hidden)
        self.fc_1 = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.fc_1.weight)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.fc_0(F.relu(self.bn_0(x, c)))
        return x + self.fc_1(F.relu(self.bn_1(h, c)))


class OccupancyDecoder(nn.Module):
    """f(p, c) -> logit of occupancy; p is (B, T, 3), c is (B, c_dim), the result (B, T)."""

    def __init__(self, c_dim: int, hidden: int, blocks: int) -> None:
        super().__init__()
        self.fc_p = nn.Linear(3, hidden)
        self.blocks = nn.ModuleList(ConditionalResnetBlock(c_dim, hidden) for _ in range(blocks))
        self.bn = ConditionalBatchNorm(c_dim, hidden)
        self.fc_out = nn.Linear(hidden, 1)

    def forward(self, p: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.fc_p(p)
        for block in self.blocks:
            x = block(x, c)
        return self.fc_out(F.relu(self.bn(x, c))).squeeze(-1)
