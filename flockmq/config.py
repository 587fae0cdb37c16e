"""Broker configuration: defaults, a TOML file, CLI flags over it.

The supervisor resolves the configuration once and hands it to every child as
JSON, so all processes agree on counts, endpoints and limits.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flockmq.curve import CurveKeys
from flockmq.listeners import (
    Listener,
    ListenerError,
    check_exposure,
    check_listener,
    parse_listener,
)
from flockmq.placement import Placement, bus_port_count, router_of

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
MAX_PASSWORD_CACHE_TTL = 86400.0  # a remembered password is hashed again at least daily
MAX_SHARD_NAMESPACE = 0x7FFFFFFF  # the first key of a two-int advisory lock is an int4


class ConfigError(Exception):
    """An invalid configuration: the message names the key and the problem."""


def default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return os.path.join(base, "flockmq")


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 1883
    acceptors: int = 0  # 0: the host's CPU count
    workers: int = 0  # 0: the host's CPU count
    # routers, each holding every subscription and every retained message;
    # acceptor i sends its publishes to router i % routers (router/replication.py),
    # in a cluster to its own node's (router_of)
    routers: int = 1
    data_dir: str = ""
    acl_file: str | None = None
    # authentication (flockmq.frontend.authentication): Mosquitto's password
    # file, and whether clients without a username may connect (None: only on
    # loopback listeners when no password file is set; see flockmq.listeners)
    password_file: str | None = None
    allow_anonymous: bool | None = None
    # an address's first bad password is answered at once, each next refusal
    # after this delay, doubling up to the maximum (flockmq.frontend.authentication)
    auth_failure_delay: float = 1.0
    auth_failure_max_delay: float = 10.0
    # a password that matched is remembered (as a keyed digest) for this
    # many seconds, so the same client reconnecting is not hashed again (0:
    # every CONNECT hashed); per acceptor, in at most `password_cache_bytes`
    password_cache_ttl: float = 120.0  # at most MAX_PASSWORD_CACHE_TTL
    password_cache_bytes: int = 4 * 1024 * 1024
    # authentication/authorization hooks in Python (flockmq.hooks): a module
    # run in `auth_processes` auth processes (None: 1 with a hook, else 0),
    # each call within `auth_hook_timeout` seconds (else denied); authorize()
    # decisions cached per acceptor for `auth_cache_ttl` seconds (0: not
    # cached), in at most `auth_cache_bytes`; calls waiting in an acceptor
    # bounded by number and bytes; sync hooks run on `auth_hook_threads`
    # threads per auth process
    auth_hook: str | None = None
    auth_processes: int | None = None
    auth_hook_timeout: float = 0.2
    auth_cache_ttl: float = 5.0
    auth_cache_bytes: int = 4 * 1024 * 1024
    auth_max_pending: int = 10_000
    auth_max_pending_bytes: int = 16 * 1024 * 1024
    auth_hook_threads: int = 8
    # the verified client certificate's fields given to authenticate()
    # (`certificate`), at most this many bytes of them (0: none)
    auth_hook_cert_bytes: int = 4096
    # which of authenticate/authorize the hook defines: found when the
    # configuration is checked (not a setting)
    auth_hook_functions: list[str] = field(default_factory=list)
    # [[listeners]] tables (flockmq.listeners.Listener's keys); none: one
    # plain MQTT listener on host:port
    listeners: list[dict[str, Any]] = field(default_factory=list)
    acl_cache_bytes: int = 4 * 1024 * 1024  # per acceptor: cached per-topic ACL decisions
    log_level: str = "info"
    log_format: str = "text"  # or "json": one object per line
    # durable state: "sqlite" (flockmq.db in data_dir) or "none" (memory only)
    persistence: str = "sqlite"
    durability: str = "process"  # "process": survives kill -9; "power": fsync each commit
    # where durable state lives: "sqlite" (data_dir, one host) or "postgres"
    # (the flockmq schema of the database postgres_dsn names; store/postgres.py)
    store: str = "sqlite"
    postgres_dsn: str = ""  # libpq: "host=db port=5432 dbname=flockmq user=flockmq"
    # with store = "postgres": the first key of every shard's advisory lock and
    # of its write epoch (workers/ownership.py); two brokers of one database
    # with the same namespace and worker count share shards (one serves, the
    # other waits as a standby); a different namespace keeps them apart
    shard_namespace: int = 0x666C6F63  # "floc" (store/shard_locks.py NAMESPACE)
    # not a setting: this running broker's id, made by its supervisor at start
    # and handed to every child (workers/serving_broker.py new_broker_id)
    broker_id: str = ""
    # a QoS 1/2 publish not confirmed durable within this many seconds (a process
    # died mid-way) closes the publisher's connection, so the client retransmits
    publish_confirm_timeout: float = 10.0
    # ZeroMQ endpoints: "ipc" (a runtime directory) or "tcp" (tcp_host:tcp_base_port + n)
    transport: str = "ipc"
    # how the supervisor starts its children: "fork" (from the supervisor,
    # which has imported every role: pages shared, about half the memory;
    # app/forked.py) or "exec" (a new interpreter each, named by its command line)
    spawn: str = "fork"
    runtime_dir: str = ""
    tcp_host: str = "127.0.0.1"
    tcp_base_port: int = 15550
    # protocol limits
    max_packet_size: int = 1024 * 1024
    connect_timeout: float = 10.0
    max_keepalive: int = 65535
    # topic names and filters (wills too) with more levels are refused
    max_topic_levels: int = 200
    # flow control: bytes in flight on each pipe between two processes
    max_pipe_bytes: int = 4 * 1024 * 1024
    # a client's socket buffer: over this QoS 0 copies for it are dropped
    # (counted); the acceptor's total over its clients is bounded too
    max_client_buffer: int = 4 * 1024 * 1024
    max_acceptor_buffer: int = 256 * 1024 * 1024
    # QoS 1/2 publishes of one client read but not yet confirmed durable (in
    # message_size bytes): past this its socket is not read until they are;
    # and the same for all of an acceptor's clients together
    max_unconfirmed_bytes: int = 4 * 1024 * 1024
    max_acceptor_unconfirmed: int = 256 * 1024 * 1024
    # a client that reads nothing (its buffer stays over the high-water mark)
    # for this many seconds is disconnected
    write_timeout: float = 30.0
    # session limits
    max_inflight: int = 64  # outbound QoS 1/2 window per session (v5: min with Receive Maximum)
    max_queued_messages: int = 100_000  # offline/over-window queue per session, by count
    max_queued_bytes: int = 64 * 1024 * 1024  # ... and by bytes (topic, payload, properties)
    # subscriptions one session may hold, by count and by the length of their
    # filters (each new one past either gets SUBACK 0x97 Quota exceeded, 0x80
    # before MQTT 5)
    max_subscriptions: int = 10_000
    max_subscription_bytes: int = 1024 * 1024
    # the retained store (all topics): past either, a retained publish that
    # needs more room is delivered but not retained (counted)
    max_retained_messages: int = 1_000_000
    max_retained_bytes: int = 1024 * 1024 * 1024
    queue_qos0: bool = False  # queue QoS 0 messages for offline persistent sessions
    max_session_expiry: int = 0xFFFFFFFF
    # observability: counters published as retained $SYS/broker/... messages
    sys_interval: float = 10.0
    # Prometheus metrics over HTTP on host:metrics_port (router/metrics.py); 0: off
    metrics_port: int = 0
    # supervisor
    restart_backoff_max: float = 10.0
    shutdown_timeout: float = 5.0
    # not a setting: a cluster's layout over its nodes (flockmq/placement.py),
    # made from the cluster file by `flockmq serve --cluster FILE --node NAME`
    placement: Placement | None = None
    # not a setting: a cluster node's CURVE keys (flockmq/curve.py), read from
    # the cluster file's [security] by `serve --cluster`; None: no CURVE. It
    # reaches the children in the runtime directory's config file (0700 dir,
    # as the DSN's password does)
    curve: CurveKeys | None = field(default=None, repr=False)
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> Config:
        """A copy with every automatic value decided and every value checked."""
        cfg = dataclasses.replace(self)
        # the logical CPUs, as psutil.cpu_count(logical=True) counts them on
        # Linux, without psutil in `flockmq serve`
        cores = os.cpu_count() or 1
        if cfg.acceptors <= 0:
            cfg.acceptors = cores
        if cfg.workers <= 0:
            cfg.workers = cores
        if not cfg.data_dir:
            cfg.data_dir = default_data_dir()
        if cfg.auth_processes is None:
            cfg.auth_processes = 1 if cfg.auth_hook else 0
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ConfigError for the first value that is wrong, in the order
        of the checks below."""
        self._validate_port_and_counts()
        self._validate_choices()
        self._validate_store()
        self._validate_acl_file()
        self._validate_auth_hook()
        self._validate_listeners()
        self._validate_limits()
        self._validate_placement()

    def _validate_placement(self) -> None:
        """A cluster's Config is made by flockmq/cluster.py `config_values`:
        these hold by construction; checked so that no other path breaks them."""
        placement = self.placement
        if placement is None:
            return
        counts = (self.routers, self.workers, self.acceptors)
        laid_out = (
            placement.routers,
            len(placement.worker_nodes),
            len(placement.acceptor_nodes),
        )
        if counts != laid_out:
            raise ConfigError(
                f"cluster: routers, workers, acceptors {counts} are not the cluster's {laid_out}"
            )
        if self.transport != "tcp" or self.store != "postgres":
            raise ConfigError("cluster: transport = 'tcp' and store = 'postgres' only")
        if self.auth_processes:
            raise ConfigError("cluster: auth hooks are not supported in a cluster yet")

    def _validate_port_and_counts(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"port: {self.port} is not a TCP port (1-65535)")
        if not 0 <= self.metrics_port < 65536:
            raise ConfigError(f"metrics_port: {self.metrics_port} is not a TCP port (0: off)")
        if not 1 <= self.acceptors <= 256:
            raise ConfigError(f"acceptors: {self.acceptors} is outside 1-256")
        if not 1 <= self.workers <= 256:
            raise ConfigError(f"workers: {self.workers} is outside 1-256")
        if not 1 <= self.routers <= 64:
            raise ConfigError(f"routers: {self.routers} is outside 1-64")

    def _validate_choices(self) -> None:
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"log_level: {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}"
            )
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log_format: {self.log_format!r} is not one of {LOG_FORMATS}")
        if self.persistence not in ("sqlite", "none"):
            raise ConfigError(f"persistence: {self.persistence!r} is not 'sqlite' or 'none'")
        if self.durability not in ("process", "power"):
            raise ConfigError(f"durability: {self.durability!r} is not 'process' or 'power'")
        if self.transport not in ("ipc", "tcp"):
            raise ConfigError(f"transport: {self.transport!r} is not 'ipc' or 'tcp'")
        if self.spawn not in ("exec", "fork"):
            raise ConfigError(f"spawn: {self.spawn!r} is not 'exec' or 'fork'")

    def _validate_store(self) -> None:
        if self.store not in ("sqlite", "postgres"):
            raise ConfigError(f"store: {self.store!r} is not 'sqlite' or 'postgres'")
        if self.store == "postgres" and self.persistence == "none":
            raise ConfigError("store: 'postgres' is durable state; persistence = 'none' is not")
        if self.store == "postgres" and not self.postgres_dsn:
            raise ConfigError("postgres_dsn: store = 'postgres' needs a connection string")
        if not 0 <= self.shard_namespace <= MAX_SHARD_NAMESPACE:
            raise ConfigError(
                f"shard_namespace: {self.shard_namespace} is not 0..{MAX_SHARD_NAMESPACE}"
                " (a PostgreSQL int4 >= 0)"
            )
        if self.postgres_dsn:
            from flockmq.store import StoreError
            from flockmq.store.postgres import describe_dsn

            try:
                describe_dsn(self.postgres_dsn)
            except StoreError as exc:
                raise ConfigError(str(exc)) from None

    def _validate_acl_file(self) -> None:
        if self.acl_file is not None and not Path(self.acl_file).is_file():
            raise ConfigError(f"acl_file: {self.acl_file} does not exist")
        if self.acl_file is not None:
            # Read once here, so a bad line stops `flockmq serve` with its line
            # number instead of every acceptor failing at start-up.
            from flockmq.frontend.acl import ACLError, load_acl

            try:
                load_acl(self.acl_file)
            except (ACLError, OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"acl_file: {exc}") from exc

    def _validate_auth_hook(self) -> None:
        processes = self.auth_processes or 0
        if not 0 <= processes <= 64:
            raise ConfigError(f"auth_processes: {processes} is outside 0-64")
        if self.auth_hook is None:
            return
        if processes == 0:
            raise ConfigError("auth_processes: 0, but auth_hook needs at least one")
        # Imported once here, so a hook that does not load stops `flockmq
        # serve` (and `flockmq check-config`) with why, not every auth process.
        from flockmq.hooks import HookError, load_hook

        try:
            hook = load_hook(self.auth_hook)
        except HookError as exc:
            raise ConfigError(f"auth_hook: {exc}") from None
        self.auth_hook_functions = [
            name for name in ("authenticate", "authorize") if getattr(hook, name) is not None
        ]
        if not self.auth_cache_ttl >= 0:
            raise ConfigError("auth_cache_ttl: must be 0 (no cache) or a number of seconds")
        if not 0 <= self.auth_hook_cert_bytes <= 1024 * 1024:
            raise ConfigError("auth_hook_cert_bytes: 0 (no certificate fields) to 1048576")

    def _validate_limits(self) -> None:
        for name in (
            "max_packet_size",
            "max_inflight",
            "max_queued_messages",
            "max_queued_bytes",
            "max_subscriptions",
            "max_retained_messages",
            "max_retained_bytes",
            "max_subscription_bytes",
            "max_topic_levels",
            "max_pipe_bytes",
            "max_client_buffer",
            "max_unconfirmed_bytes",
            "max_acceptor_unconfirmed",
            "max_acceptor_buffer",
            "write_timeout",
            "acl_cache_bytes",
            "auth_cache_bytes",
            "password_cache_bytes",
            "auth_max_pending",
            "auth_max_pending_bytes",
            "auth_hook_threads",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive")
        if self.max_inflight > 65535:
            raise ConfigError("max_inflight: at most 65535 (packet identifiers are 16-bit)")
        for name in (
            "connect_timeout",
            "publish_confirm_timeout",
            "sys_interval",
            "restart_backoff_max",
            "shutdown_timeout",
            "auth_failure_delay",
            "auth_failure_max_delay",
            "auth_hook_timeout",
        ):
            if not getattr(self, name) > 0:  # not NaN either
                raise ConfigError(f"{name}: must be a positive number of seconds")
        if not 0 <= self.password_cache_ttl <= MAX_PASSWORD_CACHE_TTL:  # not NaN either
            raise ConfigError(
                "password_cache_ttl: 0 (not remembered) up to "
                f"{MAX_PASSWORD_CACHE_TTL:.0f} seconds (a day)"
            )
        if not 0 <= self.max_keepalive <= 65535:
            raise ConfigError("max_keepalive: 0-65535 seconds (a 16-bit field)")
        if not 0 <= self.max_session_expiry <= 0xFFFFFFFF:
            raise ConfigError("max_session_expiry: 0-4294967295 seconds (a 32-bit field)")
        count = bus_port_count(self.routers, self.workers, self.acceptors, self.auth_processes or 0)
        firsts = [self.tcp_base_port] if self.placement is None else self.placement.bus_ports
        for first in firsts:
            last_port = first + count - 1
            if self.transport == "tcp" and not (first > 0 and last_port < 65536):
                raise ConfigError(f"tcp_base_port: the bus needs ports {first}-{last_port}")

    def _validate_listeners(self) -> None:
        # Imported only when needed (hashlib and secrets; ssl): the supervisor
        # of a broker without passwords or TLS stays without them.
        if self.password_file is not None:
            # read once here, so a bad line stops `flockmq serve` with its number
            from flockmq.frontend.passwords import PasswordFile, PasswordFileError

            try:
                PasswordFile.load(self.password_file)
            except PasswordFileError as exc:
                raise ConfigError(f"password_file: {exc}") from None
        listeners = self.listener_list()
        try:
            check_exposure(listeners, self.allow_anonymous, self.password_file or self.auth_hook)
        except ListenerError as exc:
            raise ConfigError(str(exc)) from None
        if any(listener.tls for listener in listeners):
            from flockmq.frontend.tls import TLSConfigError, server_context

            try:
                for listener in listeners:
                    if listener.tls:
                        server_context(listener)  # certificates and keys that load
            except TLSConfigError as exc:
                raise ConfigError(str(exc)) from None

    def listener_list(self) -> list[Listener]:
        """The listeners, checked: `[[listeners]]`, or one on host:port."""
        try:
            if not self.listeners:
                listener = Listener(host=self.host, port=self.port)
                check_listener(listener, "--host/--port")
                return [listener]
            if not isinstance(self.listeners, list):
                raise ListenerError("listeners: expected [[listeners]] tables")
            return [
                parse_listener(raw, f"listeners[{i}]") if isinstance(raw, dict) else _not_table(i)
                for i, raw in enumerate(self.listeners)
            ]
        except ListenerError as exc:
            raise ConfigError(str(exc)) from None

    # --- endpoints -------------------------------------------------------
    def _endpoint(self, name: str, offset: int, node: int | None = None) -> str:
        """`node`: the cluster node that runs the process (Placement); None:
        this host's (an auth process, or no cluster)."""
        if self.placement is not None and node is not None:
            return self.placement.endpoint(node, offset)
        if self.transport == "tcp":
            return f"tcp://{self.tcp_host}:{self.tcp_base_port + offset}"
        return f"ipc://{self.runtime_dir}/{name}.sock"

    def _node(self, role: str, index: int) -> int | None:
        """The node of a cluster that runs the process (None: not a cluster)."""
        placement = self.placement
        if placement is None:
            return None
        if role == "router":
            return placement.router_node(index)
        if role == "worker":
            return placement.worker_nodes[index]
        return placement.acceptor_nodes[index]

    # Each process has a core inbox (always read: what the router and the
    # workers send, and credit); the router and the workers also have a work
    # inbox for what acceptors send, which they stop reading when congested
    # (see flockmq/bus.py). Ports for tcp: core inboxes from the base port
    # (router, workers, acceptors), then the work inboxes (router, workers).
    # Router 0 keeps the names and ports of the single router; routers 1..
    # come after every other process's (the auth processes'), two each.
    def router_endpoint(self, index: int = 0) -> str:
        node = self._node("router", index)
        if index == 0:
            return self._endpoint("router", 0, node)
        return self._endpoint(f"router-{index}", self._extra_router_offset(index), node)

    def worker_endpoint(self, index: int) -> str:
        return self._endpoint(f"worker-{index}", 1 + index, self._node("worker", index))

    def acceptor_endpoint(self, index: int) -> str:
        node = self._node("acceptor", index)
        return self._endpoint(f"acceptor-{index}", 1 + self.workers + index, node)

    def router_work_endpoint(self, index: int = 0) -> str:
        node = self._node("router", index)
        if index == 0:
            return self._endpoint("router-work", 1 + self.workers + self.acceptors, node)
        return self._endpoint(f"router-{index}-work", self._extra_router_offset(index) + 1, node)

    def _extra_router_offset(self, index: int) -> int:
        auth_end = 2 + 2 * self.workers + self.acceptors + (self.auth_processes or 0)
        return auth_end + 2 * (index - 1)

    def router_of(self, acceptor: int) -> int:
        """The router acceptor `acceptor` sends its publishes (and fences) to:
        in a cluster its own node's, else acceptor % routers."""
        return router_of(acceptor, self.routers, self.acceptor_routers())

    def acceptor_routers(self) -> tuple[int, ...]:
        """router_of of every acceptor, in a cluster (a table for the router
        and the workers); () elsewhere: acceptor % routers."""
        return () if self.placement is None else self.placement.acceptor_routers()

    def worker_work_endpoint(self, index: int) -> str:
        node = self._node("worker", index)
        offset = 2 + self.workers + self.acceptors + index
        return self._endpoint(f"worker-{index}-work", offset, node)

    def auth_endpoint(self, index: int) -> str:
        """An auth process's inbox (flockmq/auth/): calls from acceptors."""
        return self._endpoint(f"auth-{index}", 2 + 2 * self.workers + self.acceptors + index)

    # --- ids on the bus (flockmq/bus.py): who sent a frame ---------------
    ROUTER_ID = 0

    def router_id(self, index: int) -> int:
        """Router 0 is ROUTER_ID; routers 1.. come after the auth processes."""
        if index == 0:
            return self.ROUTER_ID
        return self.workers + self.acceptors + (self.auth_processes or 0) + index

    def worker_id(self, index: int) -> int:
        return 1 + index

    def acceptor_id(self, index: int) -> int:
        return 1 + self.workers + index

    def auth_id(self, index: int) -> int:
        return 1 + self.workers + self.acceptors + index

    # --- serialisation -----------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Config:
        values = json.loads(text)
        if values.get("placement") is not None:
            values["placement"] = Placement.from_json(values["placement"])
        if values.get("curve") is not None:
            values["curve"] = CurveKeys.from_json(values["curve"])
        return cls(**values)


def _not_table(index: int) -> Listener:
    raise ListenerError(f"listeners[{index}]: expected a table")


KNOWN_KEYS = {f.name for f in dataclasses.fields(Config)} - {
    "extra",
    "runtime_dir",
    "auth_hook_functions",
    "broker_id",
    "placement",
    "curve",
}


def load_config(
    path: str | None, overrides: dict[str, Any], fixed: dict[str, Any] | None = None
) -> Config:
    """Defaults, then the TOML file (keys as the flags, with underscores), then
    the CLI flags that were given (None means not given). `fixed`: values
    decided elsewhere (a cluster file: flockmq/cluster.py `cluster_values`);
    the file or a flag setting one of them is an error, never overridden in
    silence."""
    import tomllib  # the supervisor's and check-config's: a child reads JSON

    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
        for key, value in data.items():
            key = key.replace("-", "_")
            if key not in KNOWN_KEYS:
                raise ConfigError(f"config file {path}: unknown key {key!r}")
            values[key] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key, value in values.items():
        values[key] = checked_value(key, value)
    for key, value in (fixed or {}).items():
        if key in values and values[key] != value:
            where = f"--{key.replace('_', '-')}" if overrides.get(key) is not None else key
            raise ConfigError(
                f"{where}: the cluster file decides it ({_shown(key, value)}); leave it out"
            )
        values[key] = value
    return Config(**values).resolved()


def _shown(key: str, value: Any) -> str:
    if key == "postgres_dsn":
        return "its postgres_dsn"  # never print a password
    if key == "placement":
        return "which node runs what"
    if key == "curve":
        return "its CURVE keys"
    return f"{key} = {value!r}"


def checked_value(key: str, value: Any) -> Any:
    """`value` for the key `key` if it has the key's type (an int where a
    float goes becomes a float); ConfigError naming the key otherwise. TOML's
    `true` is not an integer here, though Python's bool is one."""
    hint = FIELD_TYPES[key]
    allowed = hint.__args__ if isinstance(hint, types.UnionType) else (hint,)
    for kind in allowed:
        origin = typing.get_origin(kind) or kind
        if kind is type(None) and value is None:
            return None
        if origin is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if origin is bool and isinstance(value, bool):
            return value
        if origin is not bool and isinstance(value, origin) and not isinstance(value, bool):
            return value
    names = " or ".join(_type_name(kind) for kind in allowed)
    raise ConfigError(f"{key}: expected {names}, got {value!r}")


def _type_name(kind: Any) -> str:
    if kind is type(None):
        return "nothing"
    if typing.get_origin(kind) is list:
        return "a list of tables" if key_is_tables(kind) else "a list"
    return str(kind.__name__)


def key_is_tables(kind: Any) -> bool:
    return typing.get_origin(typing.get_args(kind)[0]) is dict


FIELD_TYPES: dict[str, Any] = typing.get_type_hints(Config)
