"""Training machinery: configuration, the training run, checkpoints, speed settings."""
