"""Shared fixtures: real Mosquitto brokers live in tests/brokers.py."""

pytest_plugins = ["tests.brokers"]
