"""Wire contracts: pydantic models of API bodies and Kafka events. Imports no project code."""
