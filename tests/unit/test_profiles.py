"""Profiles learned from a user's own positive feedback, on real SQLite files (ltrr.profiles)."""

from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from ltrr.catalog.store import CatalogStore
from ltrr.eventlog import FeedbackEvent, SearchEvent, SQLiteEventLog, now
from ltrr.profiles import CURSOR_KEY, ProfileConfig, ProfileLearner, RawProfile, profile_hash
from ltrr.types import Entity, UserProfile

ENTITIES = [
    Entity("artist:a", "artist", "A", tags=("rock", "indie")),
    Entity("artist:b", "artist", "B", genres=("jazz",)),
    Entity("artist:c", "artist", "C", tags=("Post-Rock",)),
    Entity("track:t", "track", "T", genres=("Hip-Hop",), attrs={"artist_id": "artist:b"}),
    Entity("track:orphan", "track", "O", tags=("folk",), attrs={"artist_id": "artist:gone"}),
    Entity("playlist:p", "playlist", "P", tags=("chill",)),
]


class World:
    """A catalog and an event log in ``tmp_path``; ``click`` logs a search by ``user`` and a positive action on it."""

    def __init__(self, tmp_path, **config):
        self.tmp_path = tmp_path
        self.config = config
        self.store = CatalogStore(tmp_path / "catalog.sqlite")
        self.store.upsert_entities(ENTITIES)
        self.events = SQLiteEventLog(tmp_path / "events.sqlite")
        self.ids = itertools.count()

    def click(self, user: str, entity_id: str, action: str = "click") -> None:
        i = next(self.ids)
        self.events.record_search(SearchEvent(f"r{i}", now(), "q", user, (entity_id,)))
        self.events.record_feedback(FeedbackEvent(f"e{i}", f"r{i}", entity_id, action, 1, now()))

    def learner(self) -> ProfileLearner:
        return ProfileLearner(self.events, self.store, self.config)

    def reopen(self) -> None:
        """What a restart does: fresh connections to the same files."""
        self.store.close()
        self.events.close()
        self.store = CatalogStore(self.tmp_path / "catalog.sqlite")
        self.events = SQLiteEventLog(self.tmp_path / "events.sqlite")


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path, half_life_events=1.0)
    yield w
    w.store.close()
    w.events.close()


def test_an_unknown_user_gets_a_profile_from_its_clicks(world):
    assert world.store.user("alice") is None
    world.click("alice", "artist:a")
    world.click("alice", "track:t", "play")
    assert world.learner().step() == 2
    p = world.store.user("alice")
    # Half-life 1 event: d = 1/2. Artists: a = 1 * 1/2, b (the track's artist) = 1 -> 1/3, 2/3.
    assert p.top_artists == (("artist:b", 2 / 3), ("artist:a", 1 / 3))
    # Tags: rock = indie = 1/2 * 1/2 = 1/4 (the artist's two labels), hip hop = 1 (the track's, normalised);
    # total 3/2 -> hip hop 2/3, indie 1/6, rock 1/6 (ties by name).
    assert p.top_tags == (("hip hop", 2 / 3), ("indie", 1 / 6), ("rock", 1 / 6))
    assert world.store.get_meta(CURSOR_KEY) == "2"
    assert world.learner().step() == 0, "nothing new after the cursor"


def test_action_weights_and_entities_without_an_artist(world):
    world.click("bob", "artist:a", "favorite")  # weight 2
    world.click("bob", "playlist:p")  # no artist: artists only decay (ratios unchanged)
    world.click("bob", "track:orphan")  # its artist is not in the catalog: tags only
    assert world.learner().step() == 3
    p = world.store.user("bob")
    assert p.top_artists == (("artist:a", 1.0),)
    # rock = indie = 2/2 * 1/4 = 1/4, chill = 1 * 1/2 = 1/2, folk = 1 -> total 2.
    assert p.top_tags == (("folk", 0.5), ("chill", 0.25), ("indie", 0.125), ("rock", 0.125))


def test_anonymous_searches_and_unknown_entities_are_skipped(world):
    world.click("", "artist:a")
    world.click("carol", "artist:nope")
    world.click("carol", "artist:c")
    assert world.learner().step() == 1
    assert world.store.user("") is None
    assert world.store.user("carol") == UserProfile("carol", (("artist:c", 1.0),), (("post rock", 1.0),))
    assert world.store.get_meta(CURSOR_KEY) == "3", "skipped events move the cursor too"


def test_an_imported_profile_is_updated_not_replaced(tmp_path):
    w = World(tmp_path, half_life_events=1.0, prior_events=2.0)
    imported = UserProfile("lfm:7", (("artist:a", 0.75), ("artist:b", 0.25)), (("rock", 1.0),))
    w.store.upsert_users([imported])
    w.click("lfm:7", "artist:c")
    assert w.learner().step() == 1
    p = w.store.user("lfm:7")
    # Seeded as 2 pseudo-events: a = 1.5, b = 0.5, then halved; c = 1 -> total 2.
    assert p.top_artists == (("artist:c", 0.5), ("artist:a", 0.375), ("artist:b", 0.125))
    # rock = 2 * 1/2 = 1, post rock = 1.
    assert p.top_tags == (("post rock", 0.5), ("rock", 0.5))
    # The learner keeps going from its own state (not from the normalised profile it wrote).
    w.click("lfm:7", "artist:c")
    assert w.learner().step() == 1
    # a = 0.75 / 2, b = 0.25 / 2, c = 1/2 + 1 -> total 2.
    assert w.store.user("lfm:7").top_artists == (("artist:c", 0.75), ("artist:a", 0.1875), ("artist:b", 0.0625))
    assert w.store.user_state("lfm:7")["events"] == 2


def test_an_operator_upsert_after_learning_is_the_new_starting_point(tmp_path):
    w = World(tmp_path, half_life_events=1.0, prior_events=1.0)
    w.click("dave", "artist:a")
    w.learner().step()
    w.store.upsert_users([UserProfile("dave", (("artist:b", 1.0),), ())])
    w.click("dave", "artist:c")
    w.learner().step()
    # From the upserted profile (b = 1, as one pseudo-event), not from the learned a.
    assert w.store.user("dave").top_artists == (("artist:c", 2 / 3), ("artist:b", 1 / 3))


def test_a_crash_inside_the_transaction_leaves_nothing_and_the_replay_counts_once(world, monkeypatch):
    for user, entity in [("alice", "artist:a"), ("bob", "artist:b"), ("alice", "artist:c")]:
        world.click(user, entity)
    calls = {"n": 0}
    real = CatalogStore._put_user

    class PowerCut(BaseException):  # the process dies: not an Exception, so no bad event is skipped for it
        pass

    def dies_on_the_second_user(self, u):
        calls["n"] += 1
        if calls["n"] == 2:
            raise PowerCut("power cut")
        return real(self, u)

    monkeypatch.setattr(CatalogStore, "_put_user", dies_on_the_second_user)
    with pytest.raises(PowerCut, match="power cut"):
        world.learner().step()
    monkeypatch.setattr(CatalogStore, "_put_user", real)
    world.reopen()
    # Neither alice's profile (written before the crash) nor the cursor survived: one transaction.
    assert world.store.user("alice") is None and world.store.user_state("alice") is None
    assert world.store.get_meta(CURSOR_KEY) is None
    assert world.learner().step() == 3
    assert world.store.user("alice").top_artists == (("artist:c", 2 / 3), ("artist:a", 1 / 3))
    assert world.store.user_state("alice")["events"] == 2
    # A restart after the commit replays nothing.
    world.reopen()
    assert world.learner().step() == 0
    assert world.store.user_state("alice")["events"] == 2
    assert world.store.user("bob").top_artists == (("artist:b", 1.0),)


def test_a_batch_another_learner_applied_first_is_not_applied_again(world):
    world.click("erin", "artist:a")
    world.learner().step()

    def never(uid, profile, state):
        raise AssertionError("must not run")

    assert world.store.update_users(["erin"], never, cursor_key=CURSOR_KEY, expect=0, to=1) is False
    assert world.store.user_state("erin")["events"] == 1


def test_batches_and_the_top_50_cut(tmp_path):
    w = World(tmp_path, half_life_events=1000.0, batch_size=7)
    artists = [Entity(f"artist:x{i:02d}", "artist", f"X{i}", tags=(f"t{i:02d}",)) for i in range(60)]
    w.store.upsert_entities(artists)
    for i in range(60):
        w.click("fan", f"artist:x{i:02d}")
    assert w.learner().step() == 60
    p = w.store.user("fan")
    assert len(p.top_artists) == 50 and len(p.top_tags) == 20
    assert p.top_artists[0][0] == "artist:x59", "the most recent click weighs most"
    assert sum(x for _, x in p.top_artists) == pytest.approx(1.0)
    raw = RawProfile.from_dict(w.store.user_state("fan"))
    assert len(raw.artists) == 60 and len(raw.tags) == 60, "the raw state keeps more than the profile shows"
    assert raw.written == profile_hash(p)
    w.store.close()
    w.events.close()


def test_the_store_counts_new_or_different_profiles(tmp_path):
    store = CatalogStore(tmp_path / "c.sqlite")
    u = UserProfile("u1", (("artist:a", 1.0),), ())
    assert store.upsert_users([u, UserProfile("u2")]) == 2
    assert store.upsert_users([u, UserProfile("u2", (), (("rock", 1.0),))]) == 1
    store.close()


@pytest.mark.parametrize(
    "config, loc, message",
    [
        ({"half_life_events": 0}, ("half_life_events",), "Input should be greater than 0"),
        ({"prior_events": -1}, ("prior_events",), "Input should be greater than or equal to 0"),
        ({"batch_size": 0}, ("batch_size",), "Input should be greater than or equal to 1"),
        (
            {"action_weights": {"click": 0.0}},
            ("action_weights",),
            "Value error, the weight of 'click' must be a finite number > 0, got 0.0",
        ),
        ({"halflife": 3}, ("halflife",), "Extra inputs are not permitted"),
    ],
)
def test_config_invalid(config, loc, message):
    with pytest.raises(ValidationError) as ei:
        ProfileConfig.model_validate(config)
    (err,) = ei.value.errors()
    assert (err["loc"], err["msg"]) == (loc, message)


def test_constructor_checks_its_arguments(tmp_path):
    store = CatalogStore(tmp_path / "c.sqlite")
    with pytest.raises(TypeError, match="`events` must be a SQLiteEventLog or PostgresEventLog, got str"):
        ProfileLearner("events.sqlite", store)  # type: ignore[arg-type]
    store.close()


# -- the operator's path: `ltrr users import` / `ltrr users show` (ltrr/cli.py) ---------------------------------


def test_cli_import_then_show_round_trips(world, tmp_path, capsys):
    from ltrr.cli import main

    lines = tmp_path / "users.jsonl"
    lines.write_text(
        '{"user_id": "lfm:9", "top_artists": [{"name": "artist:a", "weight": 3}, ["artist:b", 1]],'
        ' "top_tags": [{"name": "Post-Rock", "weight": 1}]}\n\n{"user_id": "syn:1"}\n'
    )
    catalog = ["--catalog", str(world.store.path)]
    assert main(["users", "import", str(lines), *catalog]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == f"imported 2 profiles (2 new or changed) into {world.store.path}"
    assert "users: read 2 profiles" in err
    assert world.store.user("lfm:9") == UserProfile(
        "lfm:9", (("artist:a", 0.75), ("artist:b", 0.25)), (("post rock", 1.0),)
    )
    assert main(["users", "show", "lfm:9", *catalog]) == 0
    shown = capsys.readouterr().out
    assert shown == (
        '{"user_id": "lfm:9", "top_artists": [{"name": "artist:a", "weight": 0.75}, '
        '{"name": "artist:b", "weight": 0.25}], "top_tags": [{"name": "post rock", "weight": 1.0}]}\n'
    )
    lines.write_text(shown)
    assert main(["users", "import", str(lines), *catalog]) == 0
    assert "(0 new or changed)" in capsys.readouterr().out, "what show prints imports as a no-op"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            '{"user_id": "u"}\n{"user_id": "v", "x": 1}\n',
            "error: line 2: users[1]: unknown field 'x'; valid: user_id, top_artists, top_tags",
        ),
        ('\n["u"]\n', "error: line 2: users[0]: must be a JSON object with user_id, top_artists, top_tags"),
        (
            '{"user_id": "u",\n',
            "error: line 1: not valid JSON (column 17): Expecting property name enclosed in double quotes",
        ),
        (
            '{"user_id": "u", "top_tags": [{"name": "rock", "w": 1}]}\n',
            "error: line 1: users[0].top_tags[0]: unknown field 'w'; valid: name, weight",
        ),
        (
            '{"user_id": "u", "top_tags": [{"name": "rock"}]}\n',
            "error: line 1: users[0].top_tags[0].weight: must be a finite number > 0, got None",
        ),
        (
            '{"user_id": "u"}\n{"user_id": "v", "top_artists": [{"name": "artist:nope", "weight": 1}]}\n',
            "error: line 2: users[1].top_artists[0].name: unknown artist 'artist:nope': not in the catalog",
        ),
    ],
)
def test_cli_import_rejects_a_bad_line_and_writes_nothing(world, tmp_path, capsys, text, message):
    from ltrr.cli import main

    lines = tmp_path / "users.jsonl"
    lines.write_text(text)
    assert main(["users", "import", str(lines), "--catalog", str(world.store.path)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == message
    assert list(world.store.users()) == []


def test_cli_show_unknown_user_and_missing_catalog(world, tmp_path, capsys):
    from ltrr.cli import main

    assert main(["users", "show", "nobody", "--catalog", str(world.store.path)]) == 1
    assert capsys.readouterr().err == f"error: no profile for 'nobody' in {world.store.path}\n"
    missing = tmp_path / "none.sqlite"
    assert main(["users", "show", "x", "--catalog", str(missing)]) == 2
    assert capsys.readouterr().err == f"error: no catalog at {missing} (`ltrr ingest` builds it)\n"
    assert not missing.exists()
