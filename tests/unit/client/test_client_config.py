"""Configuration precedence and validation; the home's identity; the plaintext format."""

from __future__ import annotations

import json
import stat

import pytest

from parley_client.config import DEFAULT_RELAY, ConfigError, load_settings
from parley_client.keystore import Home, HomeError
from parley_client.messages import BadPlaintext, Outbox, Plaintext, SeenIds, new_text


def test_defaults(tmp_path):
    s = load_settings([], env={"HOME": str(tmp_path), "USER": "zoe"})
    assert s.name == "zoe" and s.room == "lobby"
    assert s.relays == (DEFAULT_RELAY,)
    assert s.home == tmp_path / ".local" / "share" / "parley"
    assert (s.group, s.hash, s.token, s.deniable, s.batch, s.json) == (
        "ffdhe2048",
        "sha256",
        None,
        False,
        False,
        False,
    )
    assert s.timeout == 30.0


def test_xdg_data_home_is_respected(tmp_path):
    s = load_settings([], env={"XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert s.home == tmp_path / "xdg" / "parley"


def test_parley_homes_gives_each_name_its_own_home_unless_a_home_is_given(tmp_path):
    """The client image's PARLEY_HOMES: `--name alice` and `--name bob` in one keys volume
    are two people; PARLEY_HOME or --home still name the home outright."""
    env = {"PARLEY_HOMES": str(tmp_path / "homes"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    alice = load_settings(["--name", "alice"], env=env)
    bob = load_settings(["--name", "bob"], env=env)
    assert alice.home == tmp_path / "homes" / "alice"
    assert bob.home == tmp_path / "homes" / "bob"
    # Decomposed input lands in the NFC folder: one person, one folder.
    assert load_settings(["--name", "Jose\u0301"], env=env).home == tmp_path / "homes" / "Jos\u00e9"
    env_home = {**env, "PARLEY_HOME": str(tmp_path / "mine")}
    assert load_settings(["--name", "alice"], env=env_home).home == tmp_path / "mine"
    flag = ["--name", "alice", "--home", str(tmp_path / "flag")]
    assert load_settings(flag, env=env_home).home == tmp_path / "flag"
    assert load_settings([], env={**env, "PARLEY_HOMES": ""}).home == tmp_path / "xdg" / "parley"


@pytest.mark.parametrize("name", ["../bob", "a/b", "..", ".", "/etc"])
def test_parley_homes_never_lets_a_name_leave_its_folder(tmp_path, name):
    env = {"PARLEY_HOMES": str(tmp_path / "homes")}
    with pytest.raises(ConfigError, match="name must be"):
        load_settings(["--name", name], env=env)
    assert not (tmp_path / "homes").exists()


def test_flag_beats_env_beats_default(tmp_path):
    env = {
        "PARLEY_NAME": "envname",
        "PARLEY_ROOM": "envroom",
        "PARLEY_RELAY_URL": "http://e:1",
        "PARLEY_HOME": str(tmp_path / "envhome"),
        "PARLEY_GROUP": "ffdhe3072",
        "PARLEY_HASH": "sha1",
        "PARLEY_RELAY_TOKEN": "envtoken",
        "PARLEY_TIMEOUT": "7",
        "PARLEY_DENIABLE": "1",
        "PARLEY_JSON": "yes",
    }
    s = load_settings([], env=env)
    assert (s.name, s.room, s.relays, s.group, s.hash, s.token) == (
        "envname",
        "envroom",
        ("http://e:1",),
        "ffdhe3072",
        "sha1",
        "envtoken",
    )
    assert s.home == tmp_path / "envhome" and s.timeout == 7
    assert s.deniable and s.json
    s = load_settings(
        [
            "--name",
            "flag",
            "--room",
            "flagroom",
            "--relay",
            "http://a:1, http://b:2",
            "--hash",
            "sha256",
            "--group",
            "ffdhe2048",
            "--token",
            "t",
            "--timeout",
            "3",
            "--home",
            str(tmp_path / "flaghome"),
        ],
        env=env,
    )
    assert (s.name, s.room, s.relays, s.group, s.hash, s.token, s.timeout) == (
        "flag",
        "flagroom",
        ("http://a:1", "http://b:2"),
        "ffdhe2048",
        "sha256",
        "t",
        3,
    )
    assert s.home == tmp_path / "flaghome"


def test_batch_when_stdin_is_not_a_terminal():
    assert load_settings([], env={}, stdin_is_tty=False).batch
    assert load_settings(["--batch"], env={}).batch
    assert not load_settings([], env={}).batch


@pytest.mark.parametrize(
    ("given", "stored"),
    [("Zoë", "Zoë"), ("Zoe\u0308", "Zoë"), ("Łukasz Nowak", "Łukasz Nowak"), ("李小龙", "李小龙")],
)
def test_display_names_are_unicode_letters_nfc(given, stored):
    assert load_settings(["--name", given], env={}).name == stored


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as info:
        load_settings(["--version"], env={})
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("parley ")


def test_settings_are_frozen():
    s = load_settings([], env={})
    with pytest.raises(AttributeError):
        s.name = "other"


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["--relay", "localhost:5000"], {}, "relay URL"),
        (["--relay", ","], {}, "at least one URL"),
        (["--group", "tiny"], {}, "unknown group"),
        ([], {"PARLEY_HASH": "md5"}, "unknown hash"),
        (["--timeout", "soon"], {}, "--timeout"),
        (["--timeout", "-1"], {}, "--timeout"),
        (["--rekey-after", "5"], {}, "unrecognized arguments: --rekey-after"),
        (["--name", " padded"], {}, "name"),
        (["--name", "bob\u202e"], {}, "name"),  # a bidi override
        (["--name", "a\x1b[31m"], {}, "name"),
        (["--name", "x" * 65], {}, "name"),
        (["--name", ".."], {}, "name"),  # would be the key folder's parent
        (["--relay", "http://localhost:99999"], {}, "port must be 1-65535"),
        (["--relay", "http://localhost:0"], {}, "port must be 1-65535"),
        (["--relay", "http://localhost:port"], {}, "port must be 1-65535"),
        (["--relay", "http://localhost:5000/chat"], {}, "only scheme, host and port"),
        (["--relay", "ftp://localhost:5000"], {}, "relay URL"),
        (["--accept-new-key", " "], {}, "--accept-new-key"),
        (["--room", "x" * 65], {}, "room"),
        ([], {"PARLEY_DENIABLE": "maybe"}, "yes/no"),
        (["--no-such-flag"], {}, "unrecognized"),
    ],
)
def test_bad_config_is_one_clear_line(argv, env, needle):
    with pytest.raises(ConfigError) as info:
        load_settings(argv, env=env)
    text = str(info.value)
    assert needle in text and "\n" not in text


def test_identity_is_created_once_with_mode_0600_and_does_not_depend_on_the_name(tmp_path):
    home = Home(tmp_path / "home")
    first = home.load_or_create_identity("alice")
    assert stat.S_IMODE(home.identity_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.path.stat().st_mode) == 0o700
    again = Home(tmp_path / "home").load_or_create_identity("alice")
    assert again.public.key_id == first.public.key_id
    renamed = Home(tmp_path / "home").load_or_create_identity("ally")
    assert renamed.name == "ally" and renamed.signing_key.x == first.signing_key.x
    other = Home(tmp_path / "other").load_or_create_identity("alice")
    assert other.public.key_id != first.public.key_id


def test_identity_group_mismatch_and_corrupt_file_are_clear_errors(tmp_path):
    home = Home(tmp_path / "home")
    home.load_or_create_identity("alice")
    with pytest.raises(HomeError, match="uses group ffdhe2048"):
        home.load_or_create_identity("alice", "ffdhe3072")
    home.identity_path.write_text("{not json")
    with pytest.raises(HomeError, match="cannot read identity"):
        home.load_or_create_identity("alice")


def test_old_per_name_layout_is_moved_up_once_with_a_line(tmp_path):
    from parley_crypto import identity

    old = identity.Identity.generate("alice")
    old.save(tmp_path / "home" / "alice" / "identity.json")
    (tmp_path / "home").chmod(0o700)
    home = Home(tmp_path / "home")
    loaded = home.load_or_create_identity("alice")
    assert loaded.public.key_id == old.public.key_id
    assert home.identity_path.exists() and not (tmp_path / "home/alice/identity.json").exists()
    assert len(home.notes) == 1 and "moved your identity" in home.notes[0]
    assert Home(tmp_path / "home").load_or_create_identity("alice").public == loaded.public


def test_plaintext_round_trip_and_validation():
    msg = new_text("héllo")
    assert Plaintext.decode(msg.encode()) == msg
    for bad in [
        b"\xff\xfe",
        b"[]",
        b'{"id": "", "ts": 1, "kind": "text", "body": "x"}',
        b'{"id": "a", "ts": "now", "kind": "text", "body": "x"}',
        b'{"id": "a", "ts": true, "kind": "text", "body": "x"}',
        b'{"id": "a", "ts": 1, "kind": "shout", "body": "x"}',
        b'{"id": "a", "ts": 1, "kind": "text", "body": 5}',
        json.dumps({"id": "a" * 65, "ts": 1, "kind": "text", "body": "x"}).encode(),
    ]:
        with pytest.raises(BadPlaintext):
            Plaintext.decode(bad)


def test_outbox_due_and_seen_ids_are_bounded():
    box = Outbox()
    item = box.add(new_text("a"), "k1")
    assert box.due(10.0, 5.0, "k1") == [item]
    assert box.due(10.0, 5.0, "k2") == []  # never due for another key
    item.sent_at = 10.0
    assert box.due(12.0, 5.0, "k1") == [] and box.due(15.0, 5.0, "k1") == [item]
    box.mark_unsent()
    assert box.due(10.0, 5.0, "k1") == [item]
    assert box.delivered(item.message.id, "k2") is None  # a receipt from another key
    assert box.delivered(item.message.id, "k1") is item and len(box) == 0
    seen = SeenIds(limit=3)
    assert seen.add("a") and not seen.add("a")
    for x in "bcd":
        seen.add(x)
    assert len(seen) == 3 and "a" not in seen and "d" in seen
