"""Retrieval strategies, resolved by name through :data:`REGISTRY`."""
