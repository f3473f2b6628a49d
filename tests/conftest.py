"""Shared fixtures: real Mosquitto brokers (tests/brokers.py), real edgestream processes."""

pytest_plugins = ["tests.brokers", "tests.e2e.harness"]
