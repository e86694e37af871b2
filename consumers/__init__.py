"""Consumers of the Kafka topics with side effects: the supervisor notifier (SPEC §6)."""
