"""`flockmq passwd`: what `mosquitto_passwd` does, on the same file format
(see flockmq.frontend.passwords): add or change a user's password, delete a
user, or hash a plain-text file in place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flockmq.frontend.passwords import (
    PasswordFile,
    PasswordFileError,
    check_username,
    hash_password,
    hash_plain_text_file,
    write_password_file,
)


@dataclass(frozen=True, slots=True)
class PasswdRequest:
    file: str
    username: str | None
    password: str | None
    batch: bool = False
    create: bool = False
    delete: bool = False
    upgrade: bool = False
    scheme: str = "sha512-pbkdf2"
    iterations: int = 101


def run_passwd(request: PasswdRequest, prompt: Callable[[], str]) -> str:
    """Carry out `request` on its file; returns a message for the user (or "").
    Raises ValueError (bad arguments, a bad file) or OSError."""
    check_arguments(request)
    path = Path(request.file)
    if request.upgrade:
        text = path.read_text(encoding="utf-8")
        upgraded = hash_plain_text_file(text, request.scheme, request.iterations, str(path))
        write_password_file(path, upgraded)
        return ""
    assert request.username is not None  # check_arguments
    passwords = PasswordFile() if request.create else _load(path)
    if request.delete:
        if request.username not in passwords:
            raise ValueError(f"user {request.username} not found")
        del passwords.entries[request.username]
    else:
        password = request.password if request.batch else prompt()
        assert password is not None
        passwords.entries[request.username] = hash_password(
            password.encode(), request.scheme, request.iterations
        )
    write_password_file(path, passwords)
    return ""


def check_arguments(request: PasswdRequest) -> None:
    if sum((request.create, request.delete, request.upgrade)) > 1:
        raise ValueError("-c, -D and -U cannot be combined")
    if request.upgrade:
        if request.username is not None or request.batch:
            raise ValueError("-U takes only the file")
        return
    if request.username is None:
        raise ValueError("a username is required")
    check_username(request.username)
    if request.batch and not request.delete and request.password is None:
        raise ValueError("-b needs the password as the third argument")
    if request.password is not None and not request.batch:
        raise ValueError("a password on the command line needs -b")
    if request.delete and request.password is not None:
        raise ValueError("-D takes no password")


def _load(path: Path) -> PasswordFile:
    try:
        return PasswordFile.load(path)
    except PasswordFileError:
        if not path.exists():
            raise ValueError(f"{path} does not exist (use -c to create it)") from None
        raise
