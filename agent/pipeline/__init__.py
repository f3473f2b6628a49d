"""Event pipelines: the steps that filter, key and aggregate events between streams."""
