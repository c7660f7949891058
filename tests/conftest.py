"""Shared pytest set-up. Backend fixtures live in tests/fixtures/ as plugins."""

import os

# Offline model loading and Ray settings must be in the environment before any
# import of sentence-transformers or Ray, and before Ray starts workers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_SERVE_USE_GRPC_BY_DEFAULT", "1")  # as the Makefile sets it
os.environ.setdefault("RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD", "1")
os.environ.setdefault("RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP", "1")
os.environ.setdefault("RAY_SERVE_GRPC_MAX_MESSAGE_SIZE", str(4 * 1024 * 1024))  # as the Makefile sets it

pytest_plugins = ["tests.fixtures.meili", "tests.fixtures.milvus", "tests.fixtures.app", "tests.fixtures.postgres"]


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    """Tests marked ``run_last`` (the gRPC fuzzer) run after the others, which share the session app."""
    items.sort(key=lambda item: item.get_closest_marker("run_last") is not None)
