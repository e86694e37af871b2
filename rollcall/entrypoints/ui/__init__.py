"""The web pages (SPEC §9.6)."""
