"""Evaluation: honest rollouts of trained arms and baselines on the test split."""
