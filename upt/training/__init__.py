"""Training: the one loop, the stages it runs, checkpoints, the latent cache and DDP."""
