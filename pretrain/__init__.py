"""Pretraining with submodel co-training (cosub) and the DeiT III recipe; the engine transfer/ reuses."""
from .cosub import cosub_loss

__all__ = ['cosub_loss']
