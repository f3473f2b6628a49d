"""Fixtures of the hub tests: real nats-server processes (tests/nats.py)."""

from tests.nats import nats_factory, nats_server

__all__ = ["nats_factory", "nats_server"]
