"""The acceptor fixtures (`process`, `acceptor`), from acceptors.py."""

from .acceptors import acceptor, process

__all__ = ["acceptor", "process"]
