"""The HTTP API (SPEC §7)."""
