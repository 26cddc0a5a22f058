"""The UPT composite: encoder E, approximator A, decoder D; rollouts in latent or physical space.

Shapes: u [B, N, history * fields] (frames stacked on channels, oldest first), pos [B, N, d] in
[0, 1]^d, query_pos [B, Q, d], cond [B, P] for one step and [B, steps, P] for a rollout, where
cond[:, s] conditions the step that produces frame s + 1 of the rollout (its first column the
normalized time of the state being advanced). `mask` [B, N] marks the real points of a padded
point-cloud batch (MeshParticleEncoder only).
"""

import torch
from torch import nn


class UPT(nn.Module):
    def __init__(
        self,
        encoder: nn.Module,
        approximator: nn.Module,
        decoder: nn.Module,
        history: int = 1,
        fields: int = 1,
        observed_fraction: float | None = None,
    ):
        super().__init__()
        self.encoder, self.approximator, self.decoder = encoder, approximator, decoder
        self.history, self.fields = history, fields
        # A point-cloud view of grid data: each trajectory is seen at its own fixed random subset of
        # the points (this fraction of them), as a mesh or particle code would sample it.
        self.observed_fraction = observed_fraction

    def observation_mask(self, trajectory: torch.Tensor | None, n_points: int) -> torch.Tensor | None:
        """[B, N] True at the points trajectory ids ``trajectory`` [B] are observed at (None: all).

        Each trajectory's subset is a function of its id alone (the id seeds the draw), so training,
        the latent cache and evaluation see the same points of the same trajectory."""
        if self.observed_fraction is None or trajectory is None:
            return None
        keep = max(1, round(self.observed_fraction * n_points))
        mask = torch.zeros(len(trajectory), n_points, dtype=torch.bool)
        for row, t in enumerate(trajectory.tolist()):
            mask[row, torch.randperm(n_points, generator=torch.Generator().manual_seed(int(t)))[:keep]] = True
        return mask.to(trajectory.device)

    def encode(self, u, pos, grid_shape=None, mask=None) -> torch.Tensor:
        if mask is None:
            return self.encoder(u, pos, grid_shape)
        return self.encoder(u, pos, grid_shape, mask=mask)

    def step(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.approximator(z, cond)

    def decode(self, z: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        return self.decoder(z, query_pos)

    def forward(self, u, pos, query_pos, cond, grid_shape=None, mask=None) -> torch.Tensor:
        """One step: the next frame at query_pos, [B, Q, fields]."""
        return self.decode(self.step(self.encode(u, pos, grid_shape, mask), cond), query_pos)

    def rollout(
        self,
        u: torch.Tensor,
        pos: torch.Tensor,
        cond: torch.Tensor,
        steps: int,
        query_pos: torch.Tensor | None = None,
        grid_shape=None,
        mode: str = "latent",
        mask: torch.Tensor | None = None,
        correct=None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Autoregressive rollout -> [B, steps, Q, fields] at query_pos (default: pos).

        latent: encode once, advance the tokens `steps` times, decode every step (cheap).
        physical: every step decode at pos, push the frame into the history window (dropping the
        oldest) and re-encode it, as a model without a self-consistent latent space must.
        correct: optional z -> z applied after every step (the diffusion residual corrector).
        last_only: return only the final frame, [B, 1, Q, fields]; a latent rollout then decodes
        once, where a physical one still decodes and re-encodes every step.
        """
        if cond.shape[1] < steps:
            raise ValueError(f"cond holds {cond.shape[1]} steps, the rollout needs {steps}")
        if mode not in ("latent", "physical"):
            raise ValueError(f"rollout mode must be 'latent' or 'physical', not {mode!r}")
        query_pos = pos if query_pos is None else query_pos
        frames = []
        z = self.encode(u, pos, grid_shape, mask)
        for s in range(steps):
            z = self.step(z, cond[:, s])
            if correct is not None:
                z = correct(z)
            if mode == "latent":
                if not last_only or s + 1 == steps:
                    frames.append(self.decode(z, query_pos))
                continue
            u_next = self.decode(z, pos)
            frames.append(u_next if query_pos is pos else self.decode(z, query_pos))
            if s + 1 < steps:
                u = torch.cat([u[..., self.fields :], u_next], dim=-1)
                z = self.encode(u, pos, grid_shape, mask)
        return torch.stack(frames[-1:] if last_only else frames, dim=1)
