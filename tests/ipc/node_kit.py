"""A real in-process node (single authority, no networking) for IPC tests: the real node
methods, module queries, access control and limits behind a real Unix socket."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from medchaind.ipc import AccessRule
from medchaind.node.config import Config
from medchaind.node.init import init_datadir
from medchaind.node.node import Node


@dataclasses.dataclass
class NodeState:
    """What a hostile client must not change."""

    height: int
    head_hash: bytes
    app_hash: bytes
    mempool: int
    banned: frozenset[Any]
    datadir: frozenset[str]


def state_of(node: Node) -> NodeState:
    tip = node.ledger.tip
    return NodeState(
        height=tip.height,
        head_hash=tip.block_hash,
        app_hash=tip.app_hash,
        mempool=len(node.mempool),
        banned=frozenset(node.banned),
        datadir=frozenset(os.listdir(node.config.datadir)),
    )


def configure(cfg: Config, access: tuple[AccessRule, ...] = (), **ipc: Any) -> Config:
    return dataclasses.replace(cfg, ipc=dataclasses.replace(cfg.ipc, **ipc), ipc_access=access)


@asynccontextmanager
async def running_node(
    base: Path, *, access: tuple[AccessRule, ...] = (), mempool: dict[str, Any] | None = None, **ipc: Any
) -> AsyncIterator[Node]:
    """Init a datadir under ``base`` and run a node on it until the block exits.

    ``ipc`` overrides ``[ipc]`` settings (e.g. ``path``, ``group``, ``max_reply_bytes``),
    ``mempool`` those of ``[mempool]`` (e.g. ``{"busy_txs": 1}``).
    """
    cfg, genesis, keys = init_datadir(base / "node")
    cfg = configure(cfg, access, **ipc)
    if mempool:
        cfg = dataclasses.replace(cfg, mempool=dataclasses.replace(cfg.mempool, **mempool))
    node = Node(cfg, genesis, keys)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        try:
            yield node
        finally:
            nursery.cancel_scope.cancel()
