"""Pretraining with submodel co-training (cosub) and the DeiT III recipe; the engine transfer/ reuses."""
from . import engine  # noqa: F401  first: engine/__init__ sets OMP_WAIT_POLICY before anything loads torch
from .cosub import cosub_loss  # noqa: E402

__all__ = ['cosub_loss']
