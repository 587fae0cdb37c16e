"""The pieces of the bundled load tester (`scripts/loadtest.py`).

`wire` encodes and parses the few MQTT packets a load client needs (sans-IO),
`client` is the asyncio protocol built on it, `stats` does the sequence and
latency accounting, `scenarios` says which clients a run has, `worker` runs a
share of the clients in one process, and `runner` coordinates the processes.
`progress`, `plot` and `broker_rss` report what happened.
"""
