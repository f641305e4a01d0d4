"""Kafka entrypoints: the consume loop and one thin decoder per event family."""
