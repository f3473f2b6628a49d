"""Stateless and edge pipeline steps, one module per step kind."""
