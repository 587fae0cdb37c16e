"""flockmq.frontend.passwords: Mosquitto's password file format, with vectors
written by mosquitto_passwd 2.0.11 (`-b pw alice secret`, `-H sha512 -b pw bob
hunter2`)."""

from __future__ import annotations

import hashlib

import pytest

from flockmq.config import Config, ConfigError
from flockmq.frontend.passwords import (
    PBKDF2,
    SHA512,
    VERIFIED_ENTRY_BYTES,
    PasswordFile,
    PasswordFileError,
    PasswordHash,
    VerifiedPasswords,
    hash_password,
    hash_plain_text_file,
    parse_hash,
)

MOSQUITTO_FILE = """\
# written by mosquitto_passwd 2.0.11
alice:$7$101$fq2q/YLj7ejogMDo$Lqd8/k60CiGh1NDSzQaTLW70gTcPwqpmtf+5vvPN6o9zJs3sg7fmmmOO0K97ts6oqDeH4aVQyLeUuyRCj9X27A==

bob:$6$bvjSOoHHzDcfsSL1$Usyx94SEDRUFcELqhAWYOF9GCr6J/W3G2MuNr6e24eS+HqUgW3nOdAo+FKlz6N8DnSY8OncPm61ajg5G3ljdhg==
"""


def test_a_file_mosquitto_passwd_wrote_is_read_unchanged() -> None:
    passwords = PasswordFile.parse(MOSQUITTO_FILE)
    assert sorted(passwords.entries) == ["alice", "bob"]
    assert passwords.entries["alice"].scheme == PBKDF2
    assert passwords.entries["alice"].iterations == 101
    assert passwords.entries["bob"].scheme == SHA512
    assert passwords.check("alice", b"secret")
    assert passwords.check("bob", b"hunter2")


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", b"Secret"),
        ("alice", b""),
        ("alice", None),
        ("bob", b"secret"),
        ("carol", b"secret"),
        ("", b"secret"),
    ],
)
def test_wrong_passwords_and_unknown_users_are_refused(
    username: str, password: bytes | None
) -> None:
    assert not PasswordFile.parse(MOSQUITTO_FILE).check(username, password)


def test_what_we_write_reads_back_as_mosquitto_writes_it() -> None:
    for scheme in (PBKDF2, SHA512):
        entry = hash_password(b"p\xc3\xa4ss", scheme)
        text = entry.encode()
        assert text.startswith("$7$101$" if scheme == PBKDF2 else "$6$")
        assert parse_hash(text) == entry
        assert entry.matches(b"p\xc3\xa4ss")
        assert not entry.matches(b"pass")
    # a fixed salt gives the hash mosquitto_passwd computed for it
    alice = PasswordFile.parse(MOSQUITTO_FILE).entries["alice"]
    assert hash_password(b"secret", PBKDF2, 101, alice.salt) == alice
    bob = PasswordFile.parse(MOSQUITTO_FILE).entries["bob"]
    assert hash_password(b"hunter2", SHA512, salt=bob.salt) == bob


def test_salts_are_random() -> None:
    assert hash_password(b"x").salt != hash_password(b"x").salt


@pytest.mark.parametrize(
    "line",
    [
        "alice",  # no hash
        ":$6$c2FsdA==$aGFzaA==",  # no username
        "alice:secret",  # plain text
        "alice:$7$x$c2FsdA==$aGFzaA==",  # iterations not a number
        "alice:$7$0$c2FsdA==$aGFzaA==",  # no iterations
        "alice:$7$99999999$c2FsdA==$aGFzaA==",  # a CONNECT would cost seconds
        "alice:$6$not base64!$aGFzaA==",
        "alice:$6$$aGFzaA==",  # empty salt
        "alice:$5$c2FsdA==$aGFzaA==",  # an unknown scheme
        "alice:$6$c2FsdA==",  # no hash part
    ],
)
def test_a_bad_line_is_refused_with_its_number_and_not_its_secret(line: str) -> None:
    with pytest.raises(PasswordFileError) as caught:
        PasswordFile.parse(f"# users\n{line}\n", "pw.txt")
    message = str(caught.value)
    assert message.startswith("pw.txt:2:")
    secret = line.partition(":")[2]
    if secret:
        assert secret not in message


def test_plain_text_gets_a_hint() -> None:
    with pytest.raises(PasswordFileError, match="flockmq passwd -U"):
        PasswordFile.parse("alice:secret\n")


def test_upgrading_a_plain_text_file_hashes_only_plain_passwords() -> None:
    bob_line = MOSQUITTO_FILE.splitlines()[-1]
    upgraded = hash_plain_text_file(f"# users\ncarol:secret\n\n{bob_line}\nx:y:z\n", PBKDF2, 101)
    assert sorted(upgraded.entries) == ["bob", "carol", "x"]
    assert upgraded.check("carol", b"secret")
    assert upgraded.check("x", b"y:z")  # the password is everything after the first ':'
    assert upgraded.check("bob", b"hunter2")  # already hashed: kept, not hashed again
    assert upgraded.entries["bob"] == PasswordFile.parse(bob_line).entries["bob"]
    dumped = upgraded.dump()
    assert "secret" not in dumped
    assert PasswordFile.parse(dumped).check("carol", b"secret")


class CountingHashes:
    """PasswordHash.compute, counted: the PBKDF2/SHA-512 work done."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        compute = PasswordHash.compute

        def counted(entry: PasswordHash, password: bytes) -> bytes:
            self.calls += 1
            return compute(entry, password)

        monkeypatch.setattr(PasswordHash, "compute", counted)


def remembering(ttl: float = 60.0, max_bytes: int = 1 << 20) -> PasswordFile:
    passwords = PasswordFile.parse(MOSQUITTO_FILE)
    passwords.recent = VerifiedPasswords(ttl, max_bytes)
    return passwords


def test_a_password_that_matched_is_not_hashed_again_within_the_ttl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    passwords = remembering(ttl=60.0)
    hashes = CountingHashes(monkeypatch)
    assert passwords.check("alice", b"secret", now=100.0)
    assert hashes.calls == 1
    assert passwords.check("alice", b"secret", now=159.0)
    assert hashes.calls == 1  # remembered
    assert passwords.check("alice", b"secret", now=160.0)
    assert hashes.calls == 2  # the ttl passed: hashed (and remembered) again
    assert passwords.check("alice", b"secret", now=161.0)
    assert hashes.calls == 2


def test_a_wrong_password_for_a_remembered_user_costs_the_full_hash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    passwords = remembering()
    assert passwords.check("alice", b"secret", now=1.0)
    hashes = CountingHashes(monkeypatch)
    for guess in (b"Secret", b"secret ", b""):
        assert not passwords.check("alice", guess, now=2.0)
    assert hashes.calls == 3  # guessing is not cheaper for a remembered user
    assert passwords.check("alice", b"secret", now=3.0)  # still remembered
    assert hashes.calls == 3


def test_refusals_and_unknown_users_are_never_remembered() -> None:
    passwords = remembering()
    for _ in range(2):
        assert not passwords.check("alice", b"wrong", now=1.0)
        assert not passwords.check("carol", b"secret", now=1.0)
    assert passwords.recent is not None and len(passwords.recent) == 0


def test_what_is_remembered_is_a_keyed_digest_not_the_password() -> None:
    passwords = remembering()
    assert passwords.check("alice", b"secret", now=1.0)
    recent = passwords.recent
    assert recent is not None
    digest, _when = recent._entries["alice"]
    assert len(digest) == 32 and b"secret" not in digest
    assert digest != hashlib.sha256(b"secret").digest()  # keyed: not a plain hash
    other = VerifiedPasswords(60.0, 1 << 20)
    other.verified("alice", other.digest(b"secret"), 1.0)
    assert other._entries["alice"][0] != digest  # each process has its own key


def test_the_least_recently_verified_are_forgotten_past_the_byte_bound() -> None:
    counted: list[str] = []
    recent = VerifiedPasswords(
        60.0, max_bytes=3 * (VERIFIED_ENTRY_BYTES + len("user0")), count=counted.append
    )
    pw = recent.digest(b"pw")
    for i in range(5):
        recent.verified(f"user{i}", pw, now=float(i))
    assert len(recent) == 3
    assert counted == ["password_cache_evictions"] * 2
    assert not recent.known("user0", pw, 5.0)
    assert not recent.known("user1", pw, 5.0)
    assert all(recent.known(f"user{i}", pw, 5.0) for i in (2, 3, 4))


def test_ttl_zero_remembers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    passwords = remembering(ttl=0.0)
    hashes = CountingHashes(monkeypatch)
    for _ in range(3):
        assert passwords.check("alice", b"secret", now=1.0)
    assert hashes.calls == 3


def test_a_clock_that_went_back_forgets_the_entry() -> None:
    recent = VerifiedPasswords(60.0, 1 << 20)
    recent.verified("alice", recent.digest(b"secret"), now=100.0)
    assert not recent.known("alice", recent.digest(b"secret"), now=50.0)
    assert len(recent) == 0


def test_hits_and_misses_are_counted() -> None:
    passwords = remembering()
    counted: list[str] = []
    assert passwords.recent is not None
    passwords.recent.count = counted.append
    assert passwords.check("alice", b"secret", now=1.0)  # not yet remembered
    assert passwords.check("alice", b"secret", now=2.0)
    assert not passwords.check("alice", b"wrong", now=3.0)
    assert counted == [
        "password_cache_misses",
        "password_cache_hits",
        "password_cache_misses",
    ]


def test_every_check_computes_the_keyed_digest_whoever_asks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A user with a remembered password costs what one without does (and
    an unknown user too): the HMAC is computed for every CONNECT checked, so
    the time of a refusal does not tell who logged in lately."""
    passwords = remembering()
    assert passwords.check("alice", b"secret", now=1.0)
    recent = passwords.recent
    assert recent is not None
    digests: list[bytes] = []
    real = VerifiedPasswords.digest

    def counting(self: VerifiedPasswords, password: bytes) -> bytes:
        digests.append(password)
        return real(self, password)

    monkeypatch.setattr(VerifiedPasswords, "digest", counting)
    assert not passwords.check("alice", b"guess", now=2.0)  # remembered user
    assert not passwords.check("bob", b"guess", now=2.0)  # known, not remembered
    assert not passwords.check("nobody", b"guess", now=2.0)  # unknown
    assert not passwords.check("alice", None, now=2.0)  # no password
    assert digests == [b"guess", b"guess", b"guess", b""]


@pytest.mark.parametrize("ttl", [-1.0, float("nan"), float("inf"), 86401.0])
def test_the_cache_ttl_is_bounded_in_the_config(ttl: float) -> None:
    with pytest.raises(ConfigError, match="password_cache_ttl"):
        Config(data_dir="/tmp/x", password_cache_ttl=ttl).resolved()


def test_a_day_and_zero_are_accepted_cache_ttls() -> None:
    for ttl in (0.0, 86400.0):
        assert Config(data_dir="/tmp/x", password_cache_ttl=ttl).resolved()
