"""Node configuration: ``<datadir>/config.toml``, environment, command-line flags.

Precedence is flags > environment > file > defaults. Every setting has a dotted name
(``section.key``); its environment variable is ``MEDCHAIND_<SECTION>_<KEY>`` in upper
case (``MEDCHAIND_CONSENSUS_CREATE_EMPTY_BLOCKS=true``). Unknown sections or keys and
values of the wrong type are errors that name the file and the setting.

Datadir layout (compare CometBFT's ``$CMTHOME`` and geth's datadir)::

    config.toml  genesis.json  keys/node.json (0600)  keys/node.passphrase (0600)
    chaindata/ (LevelDB)  consensus.wal  medchaind.ipc (0600 socket)
"""

from __future__ import annotations

import dataclasses
import grp
import logging
import os
import pwd
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..ipc.access import EVERYTHING, NAMESPACE_RE, AccessPolicy, AccessRule, unknown_namespaces
from ..types.tx import MAX_TX_BYTES

#: a node's name (``node.moniker``, ``medchaind init --moniker``)
MONIKER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: a libp2p peer id as libp2p writes it (base58btc multihash: 46 characters for "Qm...", 52 for "12D3KooW...")
PEER_ID_RE = re.compile(r"[1-9A-HJ-NP-Za-km-z]{40,128}")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class NodeSection:
    moniker: str = "medchaind"
    #: after a commit, return freed heap pages to the OS (glibc ``malloc_trim``) at most
    #: this often; 0 turns it off (medchaind/node/memtrim.py: why not more often)
    malloc_trim_ms: int = 10_000
    #: heap blocks of at least this many bytes get their own mapping, returned to the OS
    #: when freed (glibc ``M_MMAP_THRESHOLD``; 0 keeps glibc's sliding threshold, which
    #: climbs to 32 MiB and leaves large buffers fragmenting the heap: memtrim.py)
    malloc_mmap_threshold: int = 131_072
    #: the daemon's cyclic garbage collector: its generation-0 threshold (Python's is 700),
    #: and the objects alive once the node is ready are frozen out of later passes; 0
    #: leaves the collector as Python sets it (memtrim.py, "The cyclic collector")
    gc_threshold: int = 5_000


@dataclass(frozen=True, slots=True)
class KeySection:
    path: str = "keys/node.json"
    #: file holding the keystore passphrase (systemd credential, Kubernetes secret, ...)
    passphrase_file: str = "keys/node.passphrase"


#: What a caller other than the node's own user (and root) may call unless a rule grants
#: more: the node's own read methods and tx submission (clients sign their own txs), no
#: module queries (a patient's records, consents and audit log are granted per user or
#: group), never ``admin``. Module names are not listed here: the node names no module.
DEFAULT_IPC_NAMESPACES = ("node", "chain", "tx", "mempool", "consensus")


@dataclass(frozen=True, slots=True)
class IPCSection:
    path: str = ""  # default: <datadir>/medchaind.ipc
    group: str = ""  # if set, the socket is 0660 for this group
    #: connections at most, of which ``reserved_connections`` only the node's own user
    #: (and root) may take
    max_connections: int = 256
    reserved_connections: int = 16
    #: largest request (one JSON value or batch)
    max_request_bytes: int = 16 * 1024 * 1024
    #: largest reply (a batch's replies together)
    max_reply_bytes: int = 32 * 1024 * 1024
    #: unsent output per connection before it is closed as not reading, and for all together
    send_queue_bytes: int = 32 * 1024 * 1024
    send_queue_total_bytes: int = 256 * 1024 * 1024
    #: a request that has begun to arrive must be complete within this
    read_timeout_ms: int = 30_000
    #: a connection without a request (and without a subscription or long poll) is closed after this
    idle_timeout_ms: int = 600_000
    #: namespaces for callers no ``[ipc.access.<name>]`` rule names (see DEFAULT_IPC_NAMESPACES)
    default_namespaces: tuple[str, ...] = DEFAULT_IPC_NAMESPACES


@dataclass(frozen=True, slots=True)
class ConsensusSection:
    create_empty_blocks: bool = False
    empty_block_interval_ms: int = 1000
    #: the shortest time from a commit to this node's next proposal while less than half
    #: a block is pending (CometBFT's timeout_commit); 0 = propose at once
    #: (BftConfig.min_block_interval_ms says why 250)
    min_block_interval_ms: int = 250
    timeout_propose_ms: int = 3000
    timeout_propose_delta_ms: int = 500
    timeout_prevote_ms: int = 1000
    timeout_prevote_delta_ms: int = 500
    timeout_precommit_ms: int = 1000
    timeout_precommit_delta_ms: int = 500
    #: after a start, an authority looks back this many committed heights for its own
    #: precommits that its WAL does not know before it signs (CometBFT's
    #: double_sign_check_height); 0 turns the check off (the way out when a WAL is lost)
    double_sign_check_height: int = 10


@dataclass(frozen=True, slots=True)
class P2PSection:
    #: comma-separated multiaddrs to listen on, e.g. "/ip4/0.0.0.0/tcp/26656";
    #: empty = no networking (a single-authority chain needs none)
    listen: str = ""
    #: comma-separated full multiaddrs of peers to dial (".../tcp/26656/p2p/<peer id>")
    bootstrap: str = ""
    #: comma-separated peer ids of non-authority (observer) nodes allowed to connect
    observers: str = ""
    #: file holding a 32-byte hex private-network key (all nodes must share it)
    psk_file: str = ""


@dataclass(frozen=True, slots=True)
class MempoolSection:
    max_txs: int = 100_000
    max_bytes: int = 128 * 1024 * 1024
    max_per_sender: int = 20_000
    sender_rate: int = 5_000
    sender_burst: int = 20_000
    #: backpressure: above this many pending txs / bytes a client's default-lane tx is
    #: refused ``busy`` with a retry hint (gossip and the priority lane still fill up to
    #: max_txs / max_bytes; a value above its cap turns backpressure off: clients are then
    #: refused ``mempool_full`` once the pool is full, as before these settings existed)
    busy_txs: int = 10_000
    busy_bytes: int = 8 * 1024 * 1024
    #: hashes of txs the mempool dropped or evicted, kept for tx_status / tx_wait
    dropped_history: int = 100_000


@dataclass(frozen=True, slots=True)
class LogSection:
    level: str = "info"
    format: str = "text"  # text (key=value) or json


@dataclass(frozen=True, slots=True)
class MetricsSection:
    #: "host:port" for Prometheus (GET /metrics), e.g. "127.0.0.1:9464"; empty = off
    listen: str = ""


@dataclass(frozen=True, slots=True)
class ConsoleSection:
    #: "host:port" of the read-only web console (docs/console.md), e.g. "127.0.0.1:9470";
    #: empty = off. Gated by the token in <datadir>/console.token.
    listen: str = ""


@dataclass(frozen=True, slots=True)
class SyncSection:
    """State snapshots and older versions of the state (docs/protocol.md §13.4, §23.8)."""

    #: a state snapshot every this many blocks (0 = none are kept or served)
    snapshot_interval: int = 1000
    #: how many of the latest snapshots are kept and served
    snapshot_keep: int = 2
    #: also keep the state of this many recent heights (queries with "height" and proofs)
    proof_history: int = 100
    #: the most bytes of state entries per snapshot chunk
    snapshot_chunk_bytes: int = 1 << 20
    #: a node with an empty chain starts from a verified snapshot of its peers (then
    #: block sync), instead of replaying every block from genesis
    snapshot_sync: bool = False
    #: how long a snapshot-syncing node looks for a usable snapshot before it falls back
    #: to block sync from genesis
    snapshot_discovery_ms: int = 10_000
    #: FAULT INJECTION, for tests only: this node serves every snapshot chunk corrupted
    #: (one value changed), so a joining node must detect it, ban it and refetch elsewhere
    fault_corrupt_snapshot_chunks: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    datadir: Path
    node: NodeSection = field(default_factory=NodeSection)
    key: KeySection = field(default_factory=KeySection)
    ipc: IPCSection = field(default_factory=IPCSection)
    consensus: ConsensusSection = field(default_factory=ConsensusSection)
    p2p: P2PSection = field(default_factory=P2PSection)
    mempool: MempoolSection = field(default_factory=MempoolSection)
    log: LogSection = field(default_factory=LogSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    sync: SyncSection = field(default_factory=SyncSection)
    console: ConsoleSection = field(default_factory=ConsoleSection)
    #: ``[ipc.access.<name>]`` tables: who gets which namespaces besides the default
    ipc_access: tuple[AccessRule, ...] = ()

    @property
    def ipc_path(self) -> Path:
        return self.resolve(self.ipc.path) if self.ipc.path else self.datadir / "medchaind.ipc"

    @property
    def genesis_path(self) -> Path:
        return self.datadir / "genesis.json"

    @property
    def chaindata(self) -> Path:
        return self.datadir / "chaindata"

    def resolve(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else self.datadir / path


SECTIONS = ("node", "key", "ipc", "consensus", "p2p", "mempool", "log", "metrics", "console", "sync")


def parse_listen(value: str, setting: str = "metrics.listen") -> tuple[str, int]:
    """``"host:port"`` (IPv6 as ``"[::1]:9464"``) -> ``(host, port)``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{setting} must be host:port, e.g. 127.0.0.1:9464 (got {value!r})")
    return host.strip("[]"), int(port)


def _coerce(value: Any, typ: type, where: str) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif typ is str:
        if isinstance(value, str):
            return value
    elif typ is tuple:
        if isinstance(value, str):
            return tuple(x.strip() for x in value.split(",") if x.strip())
        if isinstance(value, list) and all(isinstance(x, str) for x in value):
            return tuple(value)
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}")


def _field_types(cls: type) -> dict[str, type]:
    hints = {"str": str, "int": int, "bool": bool, "tuple[str, ...]": tuple}
    return {f.name: hints[f.type] if isinstance(f.type, str) else f.type for f in dataclasses.fields(cls)}


_SECTION_CLASSES: dict[str, type] = {
    "node": NodeSection, "key": KeySection, "ipc": IPCSection,
    "consensus": ConsensusSection, "p2p": P2PSection, "mempool": MempoolSection, "log": LogSection,
    "metrics": MetricsSection, "sync": SyncSection, "console": ConsoleSection,
}


def load_config(
    datadir: Path,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    require_file: bool = False,
) -> Config:
    """Build the config from defaults, ``config.toml``, the environment, then ``overrides``.

    ``overrides`` maps dotted names (``"consensus.create_empty_blocks"``) to values from flags.
    """
    env = os.environ if env is None else env
    values: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    #: where each value that is not a default came from, for error messages
    sources: dict[str, str] = {}
    access: tuple[AccessRule, ...] = ()
    path = datadir / "config.toml"
    if path.exists():
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for section, body in doc.items():
            if section not in _SECTION_CLASSES:
                raise ConfigError(f"{path}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
            if not isinstance(body, dict):
                raise ConfigError(f"{path}: [{section}] must be a table")
            if section == "ipc" and "access" in body:
                body = dict(body)
                access = parse_ipc_access(body.pop("access"), f"{path}: ipc.access")
            types = _field_types(_SECTION_CLASSES[section])
            for k, v in body.items():
                if k not in types:
                    raise ConfigError(f"{path}: unknown setting {section}.{k}")
                values[section][k] = _coerce(v, types[k], f"{path}: {section}.{k}")
                sources[f"{section}.{k}"] = f"{path}: "
    elif require_file:
        raise ConfigError(f"{path}: no config file; run `medchaind init --datadir {datadir}` first")
    for section, cls in _SECTION_CLASSES.items():
        types = _field_types(cls)
        for k, typ in types.items():
            var = f"MEDCHAIND_{section.upper()}_{k.upper()}"
            if var in env:
                values[section][k] = _coerce(env[var], typ, f"environment {var}")
                sources[f"{section}.{k}"] = f"environment {var}: "
    for dotted, v in (overrides or {}).items():
        if v is None:
            continue
        section, _, k = dotted.partition(".")
        types = _field_types(_SECTION_CLASSES[section])
        values[section][k] = _coerce(v, types[k], f"option {dotted}")
        sources[dotted] = f"option {dotted}: "
    cfg = Config(datadir=datadir, **{s: _SECTION_CLASSES[s](**values[s]) for s in SECTIONS}, ipc_access=access)
    known_vars = {
        f"MEDCHAIND_{s.upper()}_{k.upper()}" for s, c in _SECTION_CLASSES.items() for k in _field_types(c)
    } | {"MEDCHAIND_HOME", "MEDCHAIND_KEY_PASSPHRASE", "MEDCHAIND_EXTRA_MODULES"}
    for var in env:
        if var.startswith("MEDCHAIND_") and var not in known_vars:
            logging.getLogger(__name__).warning(
                "ignoring unknown environment variable %s (settings are MEDCHAIND_<SECTION>_<KEY>)", var
            )
    try:
        check_config(cfg)
    except _SettingError as exc:
        raise ConfigError(f"{sources.get(exc.setting, '')}{exc}") from None
    return cfg


# ------------------------------------------------------------------ range checks

#: Allowed ranges of the integer settings outside ``[ipc]`` (inclusive; ``[ipc]``:
#: :data:`_IPC_RANGES`). Why bounds at all: a value outside them cannot work (a mempool
#: of -5 txs refuses every tx as ``mempool_full``; a propose timeout of 0 ms makes every
#: proposer that is a millisecond late lose its round) or holds the chain up longer than
#: anyone means (a 10-minute propose timeout stalls it ten minutes per crashed proposer).
RANGES: dict[str, tuple[int, int]] = {
    "node.malloc_trim_ms": (0, 3_600_000),
    # glibc documents 32 MiB (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit) as the maximum
    "node.malloc_mmap_threshold": (0, 32 << 20),
    "node.gc_threshold": (0, 1_000_000),
    "consensus.empty_block_interval_ms": (10, 3_600_000),
    "consensus.min_block_interval_ms": (0, 2_000),
    "consensus.timeout_propose_ms": (10, 600_000),
    "consensus.timeout_propose_delta_ms": (0, 600_000),
    "consensus.timeout_prevote_ms": (0, 600_000),
    "consensus.timeout_prevote_delta_ms": (0, 600_000),
    "consensus.timeout_precommit_ms": (0, 600_000),
    "consensus.timeout_precommit_delta_ms": (0, 600_000),
    "consensus.double_sign_check_height": (0, 100_000),
    "mempool.max_txs": (1, 10_000_000),
    # at least one transaction of the largest size must fit
    "mempool.max_bytes": (MAX_TX_BYTES, 1 << 36),
    "mempool.max_per_sender": (1, 10_000_000),
    "mempool.sender_rate": (1, 1_000_000),
    "mempool.sender_burst": (1, 10_000_000),
    "mempool.busy_txs": (1, 10_000_000),
    "mempool.busy_bytes": (MAX_TX_BYTES, 1 << 36),
    "mempool.dropped_history": (0, 10_000_000),
    "sync.snapshot_interval": (0, 100_000_000),
    "sync.snapshot_keep": (0, 100),
    "sync.proof_history": (0, 100_000_000),
    "sync.snapshot_chunk_bytes": (1024, 16 << 20),
    "sync.snapshot_discovery_ms": (0, 3_600_000),
}
#: what a range error adds about a special value
_RANGE_NOTES = {"consensus.double_sign_check_height": " (0 turns the check off)",
                "node.malloc_trim_ms": " (0 turns it off)",
                "node.malloc_mmap_threshold": " (0 keeps glibc's sliding threshold)",
                "node.gc_threshold": " (0 leaves Python's collector settings)"}


class _SettingError(ConfigError):
    """A value out of its range; ``load_config`` adds where the value came from."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def check_config(cfg: Config) -> None:
    """Every setting in its range or among its allowed values; raises ConfigError naming
    the setting, what is allowed and the value given."""
    for dotted, (lo, hi) in RANGES.items():
        section, _, key = dotted.partition(".")
        v = getattr(getattr(cfg, section), key)
        if not lo <= v <= hi:
            raise _SettingError(dotted, f"{dotted} must be in {lo}..{hi}{_RANGE_NOTES.get(dotted, '')} (got {v})")
    if cfg.mempool.max_per_sender > cfg.mempool.max_txs:
        raise _SettingError(
            "mempool.max_per_sender",
            f"mempool.max_per_sender must be in 1..{cfg.mempool.max_txs}: at most mempool.max_txs "
            f"(got {cfg.mempool.max_per_sender})",
        )
    if not MONIKER_RE.fullmatch(cfg.node.moniker):
        raise _SettingError(
            "node.moniker",
            f"node.moniker must be 1..64 letters, digits, '.', '_' or '-', beginning with a letter or digit "
            f"(got {cfg.node.moniker!r})",
        )
    if not cfg.key.path:
        raise _SettingError("key.path", "key.path must name the node keystore file (got an empty string)")
    if cfg.log.format not in LOG_FORMATS:
        raise _SettingError("log.format", f"log.format must be text or json (got {cfg.log.format!r})")
    if cfg.log.level.lower() not in LOG_LEVELS:
        raise _SettingError("log.level", f"log.level must be debug, info, warning or error (got {cfg.log.level!r})")
    if cfg.metrics.listen:
        try:
            parse_listen(cfg.metrics.listen)
        except ConfigError as exc:
            raise _SettingError("metrics.listen", str(exc)) from None
    if cfg.console.listen:
        # port 0: any free port (``medchaind dev`` prints the URL the console got)
        host, sep, port = cfg.console.listen.rpartition(":")
        if not (sep and host and port.isdigit() and 0 <= int(port) <= 65535):
            raise _SettingError("console.listen", f"console.listen must be host:port, e.g. 127.0.0.1:9470 "
                                                  f"(got {cfg.console.listen!r})")
    _check_p2p(cfg.p2p)
    try:
        check_ipc(cfg.ipc)
    except ConfigError as exc:
        raise _SettingError(str(exc).split(" ", 1)[0].rstrip(":"), str(exc)) from None


_TCP_PORT = re.compile(r"/tcp/([^/]*)")


def _check_p2p(p2p: P2PSection) -> None:
    """Ports of ``listen`` (0: any free port) and ``bootstrap`` in range, ``observers``
    peer ids in base58. The multiaddrs themselves are parsed when the network starts."""
    for name, lo in (("listen", 0), ("bootstrap", 1)):
        for addr in (a.strip() for a in getattr(p2p, name).split(",") if a.strip()):
            if not addr.startswith("/"):
                raise _SettingError(
                    f"p2p.{name}", f"p2p.{name}: {addr!r} is not a multiaddr (e.g. /ip4/10.0.0.1/tcp/26656)"
                )
            for port in _TCP_PORT.findall(addr):
                if not (port.isdigit() and lo <= int(port) <= 65535):
                    raise _SettingError(
                        f"p2p.{name}", f"p2p.{name}: the TCP port must be in {lo}..65535 (got {port!r} in {addr!r})"
                    )
    for peer in (x.strip() for x in p2p.observers.split(",") if x.strip()):
        if not PEER_ID_RE.fullmatch(peer):
            raise _SettingError(
                "p2p.observers",
                f"p2p.observers: {peer!r} is not a libp2p peer id (base58, e.g. 12D3KooW...; "
                f"`medchaind peer-id PUBLIC_KEY` prints one)",
            )


# ------------------------------------------------------------------ [ipc]

_IPC_RANGES: dict[str, tuple[int, int]] = {
    "max_connections": (1, 65_536),
    "max_request_bytes": (1024, 1 << 30),
    "max_reply_bytes": (64 * 1024, 1 << 30),
    "read_timeout_ms": (100, 3_600_000),
    "idle_timeout_ms": (1000, 86_400_000),
}


def check_ipc(ipc: IPCSection) -> None:
    """Range checks of the ``[ipc]`` limits, with errors that say what to set."""
    for name, (lo, hi) in _IPC_RANGES.items():
        v = getattr(ipc, name)
        if not lo <= v <= hi:
            raise ConfigError(f"ipc.{name} must be in {lo}..{hi} (got {v})")
    if not 0 <= ipc.reserved_connections < ipc.max_connections:
        raise ConfigError(
            f"ipc.reserved_connections must be in 0..{ipc.max_connections - 1}, less than "
            f"ipc.max_connections (got {ipc.reserved_connections})"
        )
    if not ipc.max_reply_bytes <= ipc.send_queue_bytes <= 1 << 32:
        raise ConfigError(
            f"ipc.send_queue_bytes must be in {ipc.max_reply_bytes}..{1 << 32}: at least "
            f"ipc.max_reply_bytes, so one reply always fits (got {ipc.send_queue_bytes})"
        )
    if not ipc.send_queue_bytes <= ipc.send_queue_total_bytes <= 1 << 36:
        raise ConfigError(
            f"ipc.send_queue_total_bytes must be in {ipc.send_queue_bytes}..{1 << 36}: at least "
            f"ipc.send_queue_bytes (got {ipc.send_queue_total_bytes})"
        )
    _check_namespaces(ipc.default_namespaces, "ipc.default_namespaces")


def _check_namespaces(names: Any, where: str) -> frozenset[str]:
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{where}: expected a list of namespace names, e.g. [\"records\", \"consent\"]")
    for n in names:
        if n != EVERYTHING and not NAMESPACE_RE.fullmatch(n):
            raise ConfigError(
                f"{where}: {n!r} is not a namespace (the part of a method name before '_', "
                f"e.g. \"records\" for records_get; or \"*\" for all)"
            )
    return frozenset(names)


def _resolve_ids(values: Any, where: str, kind: str) -> frozenset[int]:
    """User or group names (or numeric ids) -> numeric ids; unknown names are errors."""
    if not isinstance(values, list):
        raise ConfigError(f"{where}: expected a list of {kind} names or numeric ids")
    out: set[int] = set()
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32:
            out.add(v)
        elif isinstance(v, str) and v.isdigit() and v.isascii():
            out.add(int(v))
        elif isinstance(v, str) and v:
            try:
                out.add(pwd.getpwnam(v).pw_uid if kind == "user" else grp.getgrnam(v).gr_gid)
            except KeyError:
                raise ConfigError(f"{where}: no {kind} {v!r} on this system") from None
        else:
            raise ConfigError(f"{where}: {v!r} is not a {kind} name or numeric id")
    return frozenset(out)


def parse_ipc_access(tables: Any, where: str) -> tuple[AccessRule, ...]:
    """``[ipc.access.<name>]`` tables -> access rules (names resolved to ids now)."""
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise ConfigError(
            f"{where}: expected tables [ipc.access.<name>] with users, groups and namespaces"
        )
    rules = []
    for name, table in tables.items():
        at = f"{where}.{name}"
        unknown = sorted(set(table) - {"users", "groups", "namespaces"})
        if unknown:
            raise ConfigError(f"{at}: unknown setting(s) {unknown} (known: users, groups, namespaces)")
        uids = _resolve_ids(table.get("users", []), f"{at}.users", "user")
        gids = _resolve_ids(table.get("groups", []), f"{at}.groups", "group")
        if not uids and not gids:
            raise ConfigError(f"{at}: names no users or groups, so it would apply to nobody")
        if "namespaces" not in table:
            raise ConfigError(f"{at}: missing namespaces (e.g. namespaces = [\"records\", \"consent\"])")
        namespaces = _check_namespaces(table["namespaces"], f"{at}.namespaces")
        rules.append(AccessRule(name=name, namespaces=namespaces, uids=uids, gids=gids))
    return tuple(rules)


def ipc_access_policy(cfg: Config, owner_uid: int) -> AccessPolicy:
    """The IPC access policy: ``owner_uid`` (the node's user) and root call everything."""
    return AccessPolicy(
        owner_uids=frozenset({owner_uid, 0}),
        others=frozenset(cfg.ipc.default_namespaces),
        rules=cfg.ipc_access,
    )


def ipc_server_options(cfg: Config, namespaces: list[str]) -> dict[str, Any]:
    """Keyword arguments of :class:`medchaind.ipc.IPCServer` from ``[ipc]``.

    ``namespaces`` are those the node serves: naming another one in the access settings
    (a typo would silently grant or deny nothing) stops the node with a clear error.
    """
    policy = ipc_access_policy(cfg, os.getuid())
    unknown = unknown_namespaces(policy, namespaces)
    if unknown:
        raise ConfigError(
            f"unknown IPC namespace(s) {unknown}; this node serves: {', '.join(namespaces)}"
        )
    if policy.others & {EVERYTHING, "admin"}:
        logging.getLogger(__name__).warning(
            "ipc.default_namespaces lets every user who can open the socket call admin methods"
        )
    ipc = cfg.ipc
    return {
        "group": ipc.group or None,
        "access": policy,
        "max_line_bytes": ipc.max_request_bytes,
        "max_connections": ipc.max_connections,
        "reserved_connections": ipc.reserved_connections,
        "send_queue_bytes": ipc.send_queue_bytes,
        "send_queue_total_bytes": ipc.send_queue_total_bytes,
        "read_timeout": ipc.read_timeout_ms / 1000,
        "idle_timeout": ipc.idle_timeout_ms / 1000,
    }


def render_config(cfg: Config) -> str:
    """A commented config.toml holding ``cfg``'s values (what ``medchaind init`` writes)."""
    lines = [
        "# medchaind configuration. Precedence: command-line flags > environment",
        "# (MEDCHAIND_<SECTION>_<KEY>) > this file > built-in defaults.",
        "",
    ]
    for section in SECTIONS:
        obj = getattr(cfg, section)
        lines.append(f"[{section}]")
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            lines.append(f"{f.name} = {_toml_value(v)}")
        lines.append("")
        if section == "ipc":
            for rule in cfg.ipc_access:
                lines.append(f"[ipc.access.{_toml_key(rule.name)}]")
                if rule.uids:
                    lines.append(f"users = {_toml_value(sorted(rule.uids))}")
                if rule.gids:
                    lines.append(f"groups = {_toml_value(sorted(rule.gids))}")
                lines.append(f"namespaces = {_toml_value(sorted(rule.namespaces))}")
                lines.append("")
    return "\n".join(lines)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_key(name: str) -> str:
    return name if name and all(c.isascii() and (c.isalnum() or c in "-_") for c in name) else _toml_value(name)
