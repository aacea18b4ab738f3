"""Pretraining: typed config, the training loop, device/precision choices, distributed setup."""
