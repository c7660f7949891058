"""Strategy placement: which strategies get their own deployment, and the in-ingress handle."""

import asyncio

from deployments.app import build_app
from deployments.strategy import InProcessHandle


class FakeServer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    async def search(self, query, k):
        self.calls.append(("search", (query, k)))
        return [f"hit-{k}"]

    async def sync(self):
        self.calls.append(("sync", ()))
        return 3

    async def ready(self):
        return True


def test_in_process_handle_answers_like_a_deployment_handle():
    server = FakeServer()
    h = InProcessHandle(server)  # type: ignore[arg-type]

    async def run():
        return await h.search.remote({"text": "q"}, 7), await h.sync.remote(), await h.ready.remote()

    assert asyncio.run(run()) == (["hit-7"], 3, True)
    assert server.calls == [("search", ({"text": "q"}, 7)), ("sync", ())]


def _strategy_deployments(app) -> set[str]:
    """The strategies the ingress gets a handle for (its first bound argument; Serve has no public walker)."""
    ingress = app._bound_deployment
    assert ingress.name == "ingress"
    return set(ingress.init_args[0])


def test_strategies_placed_in_the_ingress_get_no_deployment():
    here = {"placement": "ingress"}
    args = {"strategies": {"lexical": {}, "vector": {}, "graph": here, "memory": here}}
    assert _strategy_deployments(build_app(args)) == {"lexical", "vector"}
    assert _strategy_deployments(build_app({})) == {"lexical", "vector", "graph", "memory"}
