"""The per-event ledger the event debugger reads."""
