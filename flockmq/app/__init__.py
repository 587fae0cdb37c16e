"""The application: the `flockmq` command (CLI), the supervisor that spawns
the broker's processes, and the entry point each child process runs.

Everything else under `flockmq` is shared by the roles: the bus and its
envelopes, the configuration, MQTT's rules (`flockmq.mqtt`), and the roles
themselves (`flockmq.frontend`, `flockmq.router`, `flockmq.workers`,
`flockmq.store`)."""
