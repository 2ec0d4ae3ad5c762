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
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True, slots=True)
class NodeSection:
    moniker: str = "medchaind"


@dataclass(frozen=True, slots=True)
class KeySection:
    path: str = "keys/node.json"
    #: file holding the keystore passphrase (systemd credential, Kubernetes secret, ...)
    passphrase_file: str = "keys/node.passphrase"


@dataclass(frozen=True, slots=True)
class IPCSection:
    path: str = ""  # default: <datadir>/medchaind.ipc
    group: str = ""  # if set, the socket is 0660 for this group


@dataclass(frozen=True, slots=True)
class ConsensusSection:
    create_empty_blocks: bool = False
    empty_block_interval_ms: int = 1000
    timeout_propose_ms: int = 3000
    timeout_propose_delta_ms: int = 500
    timeout_prevote_ms: int = 1000
    timeout_prevote_delta_ms: int = 500
    timeout_precommit_ms: int = 1000
    timeout_precommit_delta_ms: int = 500


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


@dataclass(frozen=True, slots=True)
class LogSection:
    level: str = "info"
    format: str = "text"  # text (key=value) or json


@dataclass(frozen=True, slots=True)
class MetricsSection:
    #: "host:port" for Prometheus (GET /metrics), e.g. "127.0.0.1:9464"; empty = off
    listen: str = ""


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


SECTIONS = ("node", "key", "ipc", "consensus", "p2p", "mempool", "log", "metrics")


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
    raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}")


def _field_types(cls: type) -> dict[str, type]:
    hints = {"str": str, "int": int, "bool": bool}
    return {f.name: hints[f.type] if isinstance(f.type, str) else f.type for f in dataclasses.fields(cls)}


_SECTION_CLASSES: dict[str, type] = {
    "node": NodeSection, "key": KeySection, "ipc": IPCSection,
    "consensus": ConsensusSection, "p2p": P2PSection, "mempool": MempoolSection, "log": LogSection,
    "metrics": MetricsSection,
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
            types = _field_types(_SECTION_CLASSES[section])
            for k, v in body.items():
                if k not in types:
                    raise ConfigError(f"{path}: unknown setting {section}.{k}")
                values[section][k] = _coerce(v, types[k], f"{path}: {section}.{k}")
    elif require_file:
        raise ConfigError(f"{path}: no config file; run `medchaind init --datadir {datadir}` first")
    for section, cls in _SECTION_CLASSES.items():
        types = _field_types(cls)
        for k, typ in types.items():
            var = f"MEDCHAIND_{section.upper()}_{k.upper()}"
            if var in env:
                values[section][k] = _coerce(env[var], typ, f"environment {var}")
    for dotted, v in (overrides or {}).items():
        if v is None:
            continue
        section, _, k = dotted.partition(".")
        types = _field_types(_SECTION_CLASSES[section])
        values[section][k] = _coerce(v, types[k], f"option {dotted}")
    cfg = Config(datadir=datadir, **{s: _SECTION_CLASSES[s](**values[s]) for s in SECTIONS})
    known_vars = {
        f"MEDCHAIND_{s.upper()}_{k.upper()}" for s, c in _SECTION_CLASSES.items() for k in _field_types(c)
    } | {"MEDCHAIND_HOME", "MEDCHAIND_KEY_PASSPHRASE"}
    for var in env:
        if var.startswith("MEDCHAIND_") and var not in known_vars:
            logging.getLogger(__name__).warning(
                "ignoring unknown environment variable %s (settings are MEDCHAIND_<SECTION>_<KEY>)", var
            )
    if not 10 <= cfg.consensus.empty_block_interval_ms <= 3_600_000:
        raise ConfigError("consensus.empty_block_interval_ms must be in 10..3600000")
    if cfg.metrics.listen:
        from .metrics import parse_listen

        parse_listen(cfg.metrics.listen)
    if cfg.log.format not in ("text", "json"):
        raise ConfigError("log.format must be 'text' or 'json'")
    if cfg.log.level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("log.level must be debug, info, warning or error")
    return cfg


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
            if isinstance(v, bool):
                rendered = "true" if v else "false"
            elif isinstance(v, int):
                rendered = str(v)
            else:
                rendered = '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
            lines.append(f"{f.name} = {rendered}")
        lines.append("")
    return "\n".join(lines)
