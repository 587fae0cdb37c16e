"""Caches a client fills with topics (issue 9 item 7): QoS 0 publishes to
thousands of distinct 64 KB topics nobody subscribes to must not grow the
router or the acceptor past what their caches may hold in bytes. Before:
16,000 such topics grew the router by 1 GB (its plan and match caches held
every topic) and the acceptor by 550 MB (the codec's topic cache), and kept
it after the publisher left."""

from __future__ import annotations

import socket

from flockmq.frontend.codec import Connect, Publish, encode
from tests.e2e.broker import MakeBroker
from tests.e2e.clients import Client, unique

from .health import MB, assert_healthy, child_pids, rss

TOPICS = 8_000
TOPIC_BYTES = 64 * 1024
# What the caches may hold by their byte limits: the router's plan cache
# (router/router.py MAX_PLANS_BYTES) and match cache (router/topic_tree.py
# DEFAULT_CACHE_BYTES); the codec's topic cache (4096 topics of at most
# 256 bytes, as bytes and as str). Unbounded, these topics alone would be
# 500 MB in the router and 500 MB in the acceptor (4096 topics, as bytes
# and as str).
ROUTER_CACHES = 16 * MB + 8 * MB
ACCEPTOR_CACHES = 2 * 4096 * 256
SLACK = 128 * MB  # allocator, buffers in flight on a loaded machine (seen: 42 MB)


def test_publishes_to_many_long_topics_nobody_subscribes_to_keep_caches_small(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(acceptors=1)
    pids = child_pids(broker)
    base = unique("longtopics")
    probe = Client(broker.port)
    probe.connect()
    probe.subscribe(f"{base}-probe", 1)
    before = rss(broker)
    with socket.create_connection(("127.0.0.1", broker.port)) as sock:
        sock.sendall(encode(Connect(unique("spray"), 4, True, 0), 4))
        filler = "x" * (TOPIC_BYTES - len(base) - 16)
        batch = []
        for i in range(TOPICS):
            batch.append(encode(Publish(f"{base}/{i:08d}/{filler}", b"p", 0), 4))
            if len(batch) == 64:
                sock.sendall(b"".join(batch))
                batch = []
        sock.sendall(b"".join(batch))
        # Barrier: the same connection's last publish reaches the probe, so
        # every earlier one went through the acceptor and the router.
        sock.sendall(encode(Publish(f"{base}-probe", b"done", 0), 4))
        (msg,) = probe.expect(1, timeout=60)
        assert msg.payload == b"done"
    after = rss(broker)
    router = after[("router", 0)] - before[("router", 0)]
    acceptor = after[("acceptor", 0)] - before[("acceptor", 0)]
    grew = f"router +{router / MB:.0f} MB, acceptor +{acceptor / MB:.0f} MB"
    print(f"{TOPICS} topics of 64 KB: {grew}")
    assert router < ROUTER_CACHES + SLACK, f"router grew by {router / MB:.0f} MB"
    assert acceptor < ACCEPTOR_CACHES + SLACK, f"acceptor grew by {acceptor / MB:.0f} MB"
    probe.disconnect()
    assert_healthy(broker, pids)
