"""ltrr: learning to rank and retrieve.

Pure logic lives here and never imports Ray: the catalog, each retrieval
strategy, query understanding, fusion, the feedback store and the config.
Ray Serve shims live in the top-level ``deployments`` package.
"""

__version__ = "0.1.0"
