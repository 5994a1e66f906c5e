"""Wire protocols: each decodes and validates a request body into hits."""
