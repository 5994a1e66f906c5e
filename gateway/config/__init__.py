"""Configuration storage (sources, integrations): one interface, one module per backend."""

from gateway.config.base import ConfigStore

__all__ = ["ConfigStore"]
