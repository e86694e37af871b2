"""Read models built from the Kafka topics (SPEC §5)."""
