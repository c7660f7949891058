"""The entity catalog: the single input of every retrieval strategy."""

from ltrr.catalog.store import CatalogStore

__all__ = ["CatalogStore"]
