"""Creating a datadir: keys, genesis, config (``medchaind init`` and ``medchaind dev``)."""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from pathlib import Path

from ..crypto import KeyPair
from ..errors import ConfigError
from ..files import save_keystore, write_private_file
from ..types import Authority, Genesis
from ..types.tx import CHAIN_ID_RE
from .config import MONIKER_RE, Config, KeySection, NodeSection, P2PSection, load_config, render_config


def init_datadir(
    datadir: Path,
    *,
    chain_id: str = "medchain-dev",
    moniker: str = "node0",
    genesis: Genesis | None = None,
    passphrase: str | None = None,
    passphrase_file: Path | None = None,
    keys: KeyPair | None = None,
    force: bool = False,
) -> tuple[Config, Genesis, KeyPair]:
    """Write ``config.toml``, ``keys/node.json`` (+ passphrase file) and ``genesis.json``.

    Without ``genesis`` a single-authority genesis is written with this node as the
    authority. Without ``passphrase`` a random one is generated into
    ``keys/node.passphrase`` (0600) so the node can start unattended; operators move it
    to a secret store (systemd credential, Kubernetes Secret) and point
    ``key.passphrase_file`` at it.
    """
    datadir = datadir.resolve()
    if not CHAIN_ID_RE.fullmatch(chain_id):
        raise ConfigError(f"chain id {chain_id!r} must match [a-z0-9][a-z0-9-]{{0,63}}")
    if not MONIKER_RE.fullmatch(moniker):
        raise ConfigError(f"moniker {moniker!r} must be 1..64 characters of letters, digits, '.', '_' or '-'")
    if (datadir / "config.toml").exists() and not force:
        raise ConfigError(f"{datadir} is already initialised (config.toml exists); "
                          "use --force to overwrite keys and config")
    if (datadir / "chaindata").exists() and force:
        raise ConfigError(f"{datadir}/chaindata exists; "
                          "refusing to replace the keys or genesis of a datadir with a chain")
    datadir.mkdir(parents=True, exist_ok=True)
    datadir.chmod(0o700)
    (datadir / "keys").mkdir(exist_ok=True, mode=0o700)
    cfg = load_config(datadir, env={})
    cfg = replace(cfg, node=NodeSection(moniker=moniker))
    if passphrase_file is not None:
        cfg = replace(cfg, key=KeySection(path=cfg.key.path, passphrase_file=str(passphrase_file.resolve())))
    keys = keys or KeyPair.generate()
    if passphrase is None:
        passphrase = secrets.token_urlsafe(32)
        write_private_file(cfg.resolve(cfg.key.passphrase_file), (passphrase + "\n").encode())
    save_keystore(cfg.resolve(cfg.key.path), keys, passphrase, label=moniker)
    if genesis is None:
        genesis = Genesis(
            chain_id=chain_id,
            genesis_time_ms=time.time_ns() // 1_000_000,
            authorities=(Authority(moniker, keys.public_key, 1),),
        )
    (datadir / "genesis.json").write_text(genesis.to_json())
    (datadir / "config.toml").write_text(render_config(cfg))
    return cfg, genesis, keys


def _ip_protocol(host: str) -> str:
    """``ip4`` or ``ip6`` for an IP address; a host name is refused with the reason."""
    import ipaddress

    try:
        return "ip4" if ipaddress.ip_address(host).version == 4 else "ip6"
    except ValueError:
        raise ConfigError(
            f"--host {host!r} is not an IP address: every node listens on it, and a name cannot be listened on. "
            "Use an IPv4 or IPv6 address (for nodes on several hosts, edit each node's [p2p] listen and bootstrap)"
        ) from None


def init_testnet(
    outdir: Path,
    validators: int,
    *,
    chain_id: str = "medchain-testnet",
    host: str = "127.0.0.1",
    base_port: int = 26656,
    observers: int = 0,
    create_empty_blocks: bool = False,
) -> list[tuple[Config, KeyPair]]:
    """Write ``validators`` authority datadirs (+ ``observers``) sharing one genesis.

    Like ``cometbft testnet``: ``<outdir>/node<i>`` each with its key, the shared
    genesis, and a config listening on ``host:base_port+i`` with every other node as a
    bootstrap peer (libp2p peer ids derive from the node keys). Observers follow the
    chain without voting; the authorities' configs allow them to connect.
    """
    from ..net.libp2p_net import peer_id_from_public_key

    if validators < 1:
        raise ConfigError("a testnet needs at least one validator")
    if not 1 <= base_port <= 65536 - validators - observers:
        raise ConfigError(
            f"--base-port must be in 1..{65536 - validators - observers} so that all "
            f"{validators + observers} nodes get a port (got {base_port})"
        )
    proto = _ip_protocol(host)
    outdir = outdir.resolve()
    if outdir.exists() and any(outdir.iterdir()):
        raise ConfigError(f"{outdir} is not empty")
    total = validators + observers
    keys = [KeyPair.generate() for _ in range(total)]
    genesis = Genesis(
        chain_id=chain_id,
        genesis_time_ms=time.time_ns() // 1_000_000,
        authorities=tuple(Authority(f"node{i}", keys[i].public_key, 1) for i in range(validators)),
    )
    peer_ids = [peer_id_from_public_key(k.public_key) for k in keys]
    addrs = [f"/{proto}/{host}/tcp/{base_port + i}/p2p/{peer_ids[i]}" for i in range(total)]
    observer_ids = ",".join(peer_ids[validators:])
    out = []
    for i in range(total):
        d = outdir / f"node{i}"
        cfg, _, _ = init_datadir(d, chain_id=chain_id, moniker=f"node{i}", genesis=genesis, keys=keys[i])
        cfg = replace(
            cfg,
            p2p=P2PSection(
                listen=f"/{proto}/{host}/tcp/{base_port + i}",
                bootstrap=",".join(a for j, a in enumerate(addrs) if j != i),
                observers=observer_ids,
            ),
            consensus=replace(cfg.consensus, create_empty_blocks=create_empty_blocks),
        )
        (d / "config.toml").write_text(render_config(cfg))
        out.append((cfg, keys[i]))
    return out
