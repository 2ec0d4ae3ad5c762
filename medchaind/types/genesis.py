"""The genesis file: a chain's identity, first authorities and parameters.

``genesis.json`` is written for humans to read and edit (hex keys, named fields); its
hash is the SHA-256 of the canonical CBOR of the parsed content, so formatting and
key order in the JSON file do not matter. Block 1's ``prev_hash`` is that hash: two
nodes with different genesis content can never agree on a block.

Example::

    {
      "chain_id": "medchain-dev",
      "genesis_time_ms": 1764000000000,
      "authorities": [{"name": "node0", "public_key": "<64 hex>", "power": 1}],
      "params": {"max_block_txs": 5000, "max_block_bytes": 8388608}
    }
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .. import codec, crypto
from ..errors import ConfigError
from .tx import CHAIN_ID_RE

MAX_INT = 2**63 - 1


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _is_utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Params:
    """Consensus-relevant parameters (part of the genesis hash)."""

    max_block_txs: int = 5000
    max_block_bytes: int = 8 * 1024 * 1024

    def to_map(self) -> dict[str, int]:
        return {"max_block_txs": self.max_block_txs, "max_block_bytes": self.max_block_bytes}


@dataclass(frozen=True, slots=True)
class Authority:
    name: str
    public_key: bytes
    power: int = 1


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_id: str
    genesis_time_ms: int
    authorities: tuple[Authority, ...]
    params: Params = field(default_factory=Params)

    def to_map(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "genesis_time_ms": self.genesis_time_ms,
            "authorities": [[a.name, a.public_key, a.power] for a in self.authorities],
            "params": self.params.to_map(),
        }

    def hash(self) -> bytes:
        return crypto.sha256(codec.encode(self.to_map()))

    def powers(self) -> dict[bytes, int]:
        return {a.public_key: a.power for a in self.authorities}

    def to_json(self) -> str:
        doc = {
            "chain_id": self.chain_id,
            "genesis_time_ms": self.genesis_time_ms,
            "authorities": [
                {"name": a.name, "public_key": a.public_key.hex(), "power": a.power}
                for a in self.authorities
            ],
            "params": self.params.to_map(),
        }
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "genesis.json") -> Genesis:
        try:
            doc = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except ValueError as exc:
            raise ConfigError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{source}: expected a JSON object")
        known = {"chain_id", "genesis_time_ms", "authorities", "params"}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {unknown}")
        chain_id = doc.get("chain_id")
        if not isinstance(chain_id, str) or not CHAIN_ID_RE.fullmatch(chain_id):
            raise ConfigError(f"{source}: chain_id must match [a-z0-9][a-z0-9-]{{0,63}}")
        gt = doc.get("genesis_time_ms")
        if type(gt) is not int or not 0 <= gt <= MAX_INT:
            raise ConfigError(f"{source}: genesis_time_ms must be a non-negative integer (ms since epoch)")
        auths_doc = doc.get("authorities")
        if not isinstance(auths_doc, list) or not auths_doc:
            raise ConfigError(f"{source}: authorities must be a non-empty list")
        auths = []
        seen: set[bytes] = set()
        for i, a in enumerate(auths_doc):
            if not isinstance(a, dict):
                raise ConfigError(f"{source}: authority {i} must be an object")
            name = a.get("name", f"authority{i}")
            if not isinstance(name, str) or not 0 < len(name) <= 64 or not _is_utf8(name):
                raise ConfigError(f"{source}: authority {i} needs a name of 1..64 characters")
            try:
                pk = bytes.fromhex(a["public_key"])
            except (KeyError, ValueError, TypeError):
                pk = b""
            if len(pk) != 32:
                raise ConfigError(
                    f"{source}: authority {i} has no valid public_key (expected 32 bytes hex)"
                )
            if pk in seen:
                raise ConfigError(f"{source}: authority {i} repeats a public key")
            seen.add(pk)
            power = a.get("power", 1)
            if type(power) is not int or not 1 <= power <= 100:
                raise ConfigError(f"{source}: authority {i} power must be an integer in 1..100")
            auths.append(Authority(name, pk, power))
        p = doc.get("params", {})
        if not isinstance(p, dict):
            raise ConfigError(f"{source}: params must be an object")
        defaults = Params()
        unknown_p = sorted(set(p) - set(defaults.to_map()))
        if unknown_p:
            raise ConfigError(f"{source}: unknown param(s) {unknown_p}")
        values = {**defaults.to_map(), **p}
        for k, v in values.items():
            if type(v) is not int or not 1 <= v <= MAX_INT:
                raise ConfigError(f"{source}: params.{k} must be a positive integer")
        return cls(chain_id, gt, tuple(auths), Params(**values))
