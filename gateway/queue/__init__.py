"""The durable delivery queue: one interface (`base.Queue`), one module per backend."""

from gateway.queue.base import Queue

__all__ = ["Queue"]
