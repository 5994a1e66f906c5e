"""Destination-neutral building blocks: settings, errors, models, metrics, crypto, PII hashing."""
