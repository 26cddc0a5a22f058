"""The network of the latent diffusion corrector (the noise schedule and sampler live elsewhere).

It sees the noisy residual x_t, the diffusion time t_diff in [0, 1] and the approximator's
prediction cond_tokens. x_t and cond_tokens are concatenated per token, so token i of the noise
is always read next to token i of the prediction it corrects; t_diff enters every block through
adaLN-Zero, and the zero-initialised output layer makes the untrained denoiser predict 0.
"""

import torch
from torch import nn

from upt.models.layers import Block, ConditionEmbedder, FinalLayer


class LatentDenoiser(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.embed_t = ConditionEmbedder(1, dim)
        self.proj_in = nn.Linear(2 * dim, dim)
        self.blocks = nn.ModuleList(
            Block(dim, heads, mlp_ratio, cond_dim=dim) for _ in range(depth)
        )
        self.out = FinalLayer(dim, dim, dim)

    def forward(
        self, x_t: torch.Tensor, t_diff: torch.Tensor, cond_tokens: torch.Tensor
    ) -> torch.Tensor:
        """x_t, cond_tokens [B, T, dim]; t_diff [B] (or one scalar for the batch) -> [B, T, dim]."""
        t_diff = torch.as_tensor(t_diff, dtype=x_t.dtype, device=x_t.device).expand(x_t.shape[0])
        c = self.embed_t(t_diff[:, None])
        x = self.proj_in(torch.cat([x_t, cond_tokens], dim=-1))
        for block in self.blocks:
            x = block(x, c)
        return self.out(x, c)
