"""Rollcall's application layer: the service that runs commands against the event store."""
