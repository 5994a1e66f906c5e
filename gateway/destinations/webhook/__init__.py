"""A generic webhook: each batch of events posted as JSON to a URL of the operator's choosing.

A deliberately small second destination: it proves that a destination is one folder and one
line in the registry.
"""
