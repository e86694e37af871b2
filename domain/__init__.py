"""Rollcall's domain model: aggregates, events and rules. Pure: no I/O, no framework."""
