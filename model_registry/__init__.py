"""Owns loading, caching, eviction and batching of models; nothing else loads one."""

from .registry import ModelRegistry

__all__ = ["ModelRegistry"]
