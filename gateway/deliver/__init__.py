"""Delivery: the worker that batches queued events to their destination and settles the answers."""
