"""The model registry (ltrr.ranking.registry): layout, publish/rollback/prune, atomic pointer, schema check,
concurrent publishers."""

from __future__ import annotations

import multiprocessing
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from catboost import CatBoostRanker

from ltrr.errors import NotFound
from ltrr.ranking import features as F
from ltrr.ranking.registry import (
    CURRENT,
    META_FILE,
    MODEL_FILE,
    ModelMeta,
    ModelRegistry,
    RegistryError,
    SchemaMismatch,
    version_name,
    version_number,
)

NAMES = ("a", "b", "c")
SCHEMA = 1
V = [version_name(i) for i in range(10)]  # V[1] == "catboost-000001"


def fit_model(seed: int = 0) -> CatBoostRanker:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, len(NAMES)))
    model = CatBoostRanker(iterations=5, depth=2, random_seed=seed, verbose=False, allow_writing_files=False)
    model.fit(x, (x[:, 0] > 0).astype(float), group_id=np.repeat(np.arange(6), 10))
    model.set_feature_names(list(NAMES))
    return model


@pytest.fixture(scope="module")
def model() -> CatBoostRanker:
    return fit_model()


def meta(**kw: object) -> ModelMeta:
    base: dict[str, object] = {"schema_version": SCHEMA, "feature_names": NAMES, "loss": "YetiRank"}
    return ModelMeta(**{**base, **kw})  # type: ignore[arg-type]


def registry(root: Path, keep: int = 5, schema: int = SCHEMA, names: tuple[str, ...] = NAMES) -> ModelRegistry:
    return ModelRegistry(root, schema_version=schema, feature_names=names, keep=keep)


def listing(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_must_be_positive(tmp_path: Path, keep: int) -> None:
    with pytest.raises(ValueError, match=re.escape(f"`keep` must be >= 1, got {keep}")):
        registry(tmp_path, keep=keep)


def test_version_names() -> None:
    assert version_name(1) == "catboost-000001"
    assert version_number("catboost-000042") == 42
    assert version_number(version_name(1234567)) == 1234567
    with pytest.raises(ValueError, match=re.escape("`version` must look like catboost-000001, got 'v1'")):
        version_number("v1")


def test_meta_round_trips() -> None:
    m = meta(
        train_metrics={"ndcg@10": 0.5},
        validation_metrics={"new": {"ndcg@10": 0.4}, "rrf": {"ndcg@10": 0.3}},
        examination=(1.0, 0.5),
        training={"iterations": 10},
        version=V[3],
        created=12.5,
        parent=V[2],
    )
    assert ModelMeta.from_dict(m.to_dict()) == m
    assert ModelMeta.from_dict({**m.to_dict(), "from_a_newer_trainer": 1}) == m
    with pytest.raises(ValueError, match="model meta must have feature_names, loss"):
        ModelMeta.from_dict({"schema_version": 1})


def test_empty_registry_reads_as_nothing_published(tmp_path: Path) -> None:
    reg = registry(tmp_path / "models")
    assert reg.current_version() is None
    assert reg.current() is None
    assert reg.load_current() is None
    assert reg.versions() == []
    assert not (tmp_path / "models").exists()  # a reader never creates the shared directory
    with pytest.raises(RegistryError, match="nothing is published"):
        reg.rollback()


def test_publish_writes_a_complete_version_then_points_at_it(tmp_path: Path, model: CatBoostRanker) -> None:
    reg = registry(tmp_path)
    before = time.time()
    assert reg.publish(model, meta(examination=(1.0, 0.5))) == V[1]
    assert listing(tmp_path) == [".lock", CURRENT, V[1]]
    assert listing(tmp_path / V[1]) == [META_FILE, MODEL_FILE]
    assert (tmp_path / CURRENT).read_text() == V[1] + "\n"
    current = reg.current()
    assert current is not None and current.version == V[1] and current.path == tmp_path / V[1]
    assert current.meta.version == V[1] and current.meta.parent is None
    assert before <= current.meta.created <= time.time()
    assert current.meta.examination == (1.0, 0.5)
    loaded = reg.load_current()
    assert loaded is not None and loaded.version == V[1]
    x = np.random.default_rng(1).normal(size=(7, len(NAMES)))
    np.testing.assert_array_equal(loaded.model.predict(x), model.predict(x))


def test_each_version_names_the_one_it_replaced(tmp_path: Path, model: CatBoostRanker) -> None:
    reg = registry(tmp_path)
    assert [reg.publish(model, meta()) for _ in range(3)] == V[1:4]
    assert [reg.get(v).meta.parent for v in V[1:4]] == [None, V[1], V[2]]
    assert reg.versions() == V[1:4]
    assert reg.current_version() == V[3]


def test_rollback_walks_back_the_parents(tmp_path: Path, model: CatBoostRanker) -> None:
    reg = registry(tmp_path)
    for _ in range(3):
        reg.publish(model, meta())
    assert reg.rollback() == V[2]
    assert reg.current_version() == V[2]
    assert reg.rollback() == V[1]
    with pytest.raises(RegistryError, match=re.escape(f"model {V[1]} has no parent to roll back to")):
        reg.rollback()
    assert reg.current_version() == V[1]
    # numbers are never reused, and the next version's parent is what serves now
    assert reg.publish(model, meta()) == V[4]
    assert reg.get(V[4]).meta.parent == V[1]
    assert reg.versions() == V[1:5]


def test_prune_keeps_the_newest_and_the_current_and_its_parent(tmp_path: Path, model: CatBoostRanker) -> None:
    reg = registry(tmp_path, keep=2)
    for _ in range(3):
        reg.publish(model, meta())
    assert reg.versions() == [V[2], V[3]]
    assert reg.rollback() == V[2]  # V[2]'s parent V[1] is already gone
    reg.publish(model, meta())  # V[4], parent V[2]: kept although not among the newest two
    assert reg.versions() == [V[2], V[3], V[4]]
    assert reg.rollback() == V[2]
    with pytest.raises(RegistryError, match=re.escape(f"model {V[2]}'s parent {V[1]} is no longer in the registry")):
        reg.rollback()
    reg.publish(model, meta())  # V[5], parent V[2]
    reg.publish(model, meta())  # V[6], parent V[5]
    assert reg.versions() == [V[5], V[6]]
    assert listing(tmp_path) == [".lock", CURRENT, V[5], V[6]]


def test_a_crashed_publish_leaves_the_old_version_served(
    tmp_path: Path, model: CatBoostRanker, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = registry(tmp_path)
    reg.publish(model, meta())
    broken = fit_model(seed=1)

    def half_written(fname: str, format: str = "cbm") -> None:
        Path(fname).write_bytes(b"CBM1 truncat")
        raise OSError("disk full")

    monkeypatch.setattr(broken, "save_model", half_written)
    with pytest.raises(OSError, match="disk full"):
        reg.publish(broken, meta())
    assert reg.current_version() == V[1]
    assert reg.versions() == [V[1]]
    assert any(name.startswith(".tmp-") for name in listing(tmp_path))  # never renamed into place
    assert reg.publish(model, meta()) == V[2]  # the next publish clears the debris
    assert listing(tmp_path) == [".lock", CURRENT, V[1], V[2]]


@pytest.mark.parametrize(
    ("schema", "names", "message"),
    [
        (2, NAMES, "was made for feature schema 1 (3 features), but this process computes schema 2 (3 features)"),
        (
            SCHEMA,
            ("a", "b", "d"),
            "was made for feature schema 1 (3 features), but this process computes schema 1 (3 features): "
            "feature 2 is 'c', here 'd'",
        ),
        (
            SCHEMA,
            ("a", "b"),
            "was made for feature schema 1 (3 features), but this process computes schema 1 (2 features): "
            "the feature lists differ in length",
        ),
    ],
    ids=["schema-version", "feature-name", "feature-count"],
)
def test_a_model_of_another_schema_is_refused(
    tmp_path: Path, model: CatBoostRanker, schema: int, names: tuple[str, ...], message: str
) -> None:
    registry(tmp_path).publish(model, meta())
    other = registry(tmp_path, schema=schema, names=names)
    assert other.current_version() == V[1]  # polling still works: the check is on load
    with pytest.raises(SchemaMismatch, match=re.escape(f"{V[1]} {message}")) as caught:
        other.load(V[1])
    assert isinstance(caught.value, F.SchemaMismatch)  # one except covers logged features and models
    with pytest.raises(SchemaMismatch, match=re.escape(message)):
        other.load_current()


def test_publish_refuses_a_meta_of_another_schema_or_model(tmp_path: Path, model: CatBoostRanker) -> None:
    reg = registry(tmp_path)
    with pytest.raises(SchemaMismatch, match=re.escape("the model to publish was made for feature schema 2")):
        reg.publish(model, meta(schema_version=2))
    model_ab = CatBoostRanker(iterations=2, verbose=False, allow_writing_files=False)
    model_ab.fit(np.eye(4)[:, :2], [1.0, 0.0, 1.0, 0.0], group_id=[0, 0, 1, 1])  # columns "0", "1"
    with pytest.raises(ValueError, match=re.escape("`model` must have the feature names of `meta.feature_names`")):
        reg.publish(model_ab, meta(feature_names=("a", "b", "c")))
    with pytest.raises(ValueError, match=re.escape("`model` must be fitted")):
        reg.publish(CatBoostRanker(), meta())
    assert reg.versions() == []


def test_a_dangling_pointer_is_an_error_not_nothing(tmp_path: Path, model: CatBoostRanker) -> None:
    reg = registry(tmp_path)
    reg.publish(model, meta())
    (tmp_path / CURRENT).write_text(V[7] + "\n")
    with pytest.raises(NotFound, match=re.escape(f"model {V[7]} is not in the registry")):
        reg.load_current()


def test_load_current_retries_a_version_pruned_after_it_was_read(tmp_path: Path, model: CatBoostRanker) -> None:
    reg = registry(tmp_path, keep=1)
    for _ in range(3):
        reg.publish(model, meta())
    assert reg.versions() == [V[2], V[3]]  # V[1] pruned; V[2] kept as the current one's parent

    class StaleOnce(ModelRegistry):
        """Read CURRENT when it still named V[1], then two publishes pruned V[1] before the load."""

        answers = [V[1]]

        def current_version(self) -> str | None:
            return self.answers.pop() if self.answers else super().current_version()

    loaded = StaleOnce(tmp_path, schema_version=SCHEMA, feature_names=NAMES).load_current()
    assert loaded is not None and loaded.version == V[3]


def test_readers_never_see_a_version_without_its_files(tmp_path: Path, model: CatBoostRanker) -> None:
    """A reader polling while a publisher publishes sees only complete versions, in publish order."""
    reg = registry(tmp_path, keep=50)
    reg.publish(model, meta())
    seen: list[str] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def poll() -> None:
        reader = registry(tmp_path, keep=50)
        try:
            while True:
                last = done.is_set()  # one more read after the last publish
                version = reader.current_version()
                assert version is not None
                assert (tmp_path / version / MODEL_FILE).is_file() and (tmp_path / version / META_FILE).is_file()
                if not seen or seen[-1] != version:
                    assert reader.get(version).meta.version == version
                    seen.append(version)
                if last:
                    return
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread below
            errors.append(exc)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        for _ in range(15):
            reg.publish(model, meta())
    finally:
        done.set()
        thread.join()
    assert errors == []
    assert seen == sorted(seen, key=version_number) and len(seen) >= 2
    assert seen[-1] == version_name(16)


def check_serial_history(reg: ModelRegistry, n: int) -> None:
    """n publishes, each a complete version whose parent is the one before: none was lost or interleaved."""
    assert reg.versions() == [version_name(i) for i in range(1, n + 1)]
    for i in range(1, n + 1):
        m = reg.get(version_name(i)).meta
        assert m.version == version_name(i)
        assert m.parent == (version_name(i - 1) if i > 1 else None)
    assert reg.current_version() == version_name(n)
    assert not [p for p in reg.root.iterdir() if p.name.startswith(".tmp-") or p.name.startswith(f".{CURRENT}.")]


def test_threads_publishing_at_once_do_not_corrupt(tmp_path: Path, model: CatBoostRanker) -> None:
    reg = registry(tmp_path, keep=100)
    barrier = threading.Barrier(4)

    def publish_five() -> None:
        own = registry(tmp_path, keep=100)  # a registry object per publisher, as separate processes would have
        barrier.wait()
        for _ in range(5):
            own.publish(model, meta())

    threads = [threading.Thread(target=publish_five) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check_serial_history(reg, 20)


def publish_from_process(root: str, model_path: str, n: int, start: float) -> None:
    """A separate publisher process (spawned, so it shares nothing with the test but the directory)."""
    model = CatBoostRanker().load_model(model_path)
    reg = registry(Path(root), keep=100)
    time.sleep(max(0.0, start - time.time()))
    for _ in range(n):
        reg.publish(model, meta())


def test_processes_publishing_at_once_do_not_corrupt(tmp_path: Path, model: CatBoostRanker) -> None:
    model_path = tmp_path / "seed.cbm"
    model.save_model(str(model_path))
    root = tmp_path / "models"
    ctx = multiprocessing.get_context("spawn")
    start = time.time() + 3.0  # after every child has imported catboost, so their publishes overlap
    procs = [ctx.Process(target=publish_from_process, args=(str(root), str(model_path), 4, start)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    check_serial_history(registry(root, keep=100), 12)
