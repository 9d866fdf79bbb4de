"""End-to-end tests of the distributed mode (real Kafka broker and PostgreSQL server)."""
