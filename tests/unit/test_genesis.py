"""genesis.json parsing, its error messages and its hash (docs/protocol.md §9)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from medchaind import codec, crypto
from medchaind.errors import ConfigError
from medchaind.files import load_genesis
from medchaind.types import Genesis
from medchaind.types.genesis import Authority, Params

KEYS = [crypto.SigningKey(bytes([0x10 + i]) * 32).public_key for i in range(3)]


def doc(**changes: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "chain_id": "medchain-dev",
        "genesis_time_ms": 1_764_000_000_000,
        "authorities": [
            {"name": f"node{i}", "public_key": k.hex(), "power": i + 1} for i, k in enumerate(KEYS)
        ],
        "params": {"max_block_txs": 100, "max_block_bytes": 1 << 20},
    }
    d.update(changes)
    return d


def parse(d: Any) -> Genesis:
    return Genesis.from_json(json.dumps(d), source="g.json")


def test_from_json() -> None:
    g = parse(doc())
    assert g.chain_id == "medchain-dev"
    assert g.genesis_time_ms == 1_764_000_000_000
    assert g.authorities == tuple(Authority(f"node{i}", k, i + 1) for i, k in enumerate(KEYS))
    assert g.params == Params(max_block_txs=100, max_block_bytes=1 << 20)
    assert g.powers() == {k: i + 1 for i, k in enumerate(KEYS)}


def test_defaults() -> None:
    d = doc(authorities=[{"public_key": KEYS[0].hex()}])
    del d["params"]
    g = parse(d)
    assert g.authorities == (Authority("authority0", KEYS[0], 1),)
    assert g.params == Params()
    assert g.params.to_map() == {"max_block_txs": 5000, "max_block_bytes": 8 * 1024 * 1024}
    # partial params fall back to defaults per key
    assert parse(doc(params={"max_block_txs": 7})).params == Params(max_block_txs=7)


def test_to_json_round_trip() -> None:
    g = parse(doc())
    assert Genesis.from_json(g.to_json()) == g
    assert Genesis.from_json(g.to_json()).hash() == g.hash()


def test_load(tmp_path: Path) -> None:
    p = tmp_path / "genesis.json"
    p.write_text(json.dumps(doc()))
    assert load_genesis(p) == parse(doc())
    with pytest.raises(ConfigError, match="cannot read genesis"):
        load_genesis(tmp_path / "missing.json")
    p.write_text("{")
    with pytest.raises(ConfigError, match=f"{p}: not valid JSON"):
        load_genesis(p)


def test_hash_is_sha256_of_canonical_cbor() -> None:
    g = parse(doc())
    expected = codec.encode(
        {
            "chain_id": "medchain-dev",
            "genesis_time_ms": 1_764_000_000_000,
            "authorities": [[f"node{i}", k, i + 1] for i, k in enumerate(KEYS)],
            "params": {"max_block_txs": 100, "max_block_bytes": 1 << 20},
        }
    )
    assert g.hash() == crypto.sha256(expected)


def test_hash_independent_of_key_order_and_whitespace() -> None:
    d = doc()
    h = parse(d).hash()
    compact = json.dumps(d, separators=(",", ":"))
    spaced = json.dumps(d, indent=7)
    shuffled = json.dumps(
        {
            "params": dict(reversed(list(d["params"].items()))),
            "authorities": [dict(reversed(list(a.items()))) for a in d["authorities"]],
            "genesis_time_ms": d["genesis_time_ms"],
            "chain_id": d["chain_id"],
        }
    )
    upper_hex = json.dumps(
        doc(authorities=[{**a, "public_key": a["public_key"].upper()} for a in d["authorities"]])
    )
    explicit_defaults = doc(params={"max_block_txs": 5000, "max_block_bytes": 8 * 1024 * 1024})
    implicit_defaults = doc()
    del implicit_defaults["params"]
    for text in (compact, spaced, shuffled, "\n\t " + compact + "\n", upper_hex):
        assert Genesis.from_json(text).hash() == h
    assert parse(explicit_defaults).hash() == parse(implicit_defaults).hash()


@pytest.mark.parametrize(
    "changes",
    [
        {"chain_id": "medchain-dev2"},
        {"genesis_time_ms": 1_764_000_000_001},
        {"params": {"max_block_txs": 101, "max_block_bytes": 1 << 20}},
        {"authorities": [{"name": "nodeX", "public_key": KEYS[0].hex(), "power": 1}]},
        {"authorities": [{"name": "node0", "public_key": KEYS[0].hex(), "power": 2}]},
    ],
)
def test_hash_commits_to_content(changes: dict[str, Any]) -> None:
    assert parse(doc(**changes)).hash() != parse(doc()).hash()


def test_authority_order_is_part_of_the_content() -> None:
    d = doc()
    assert parse(doc(authorities=d["authorities"][::-1])).hash() != parse(d).hash()


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("{", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('"x"', "expected a JSON object"),
    ],
)
def test_bad_documents(text: str, msg: str) -> None:
    with pytest.raises(ConfigError, match=f"g.json: {msg}"):
        Genesis.from_json(text, source="g.json")


def _auth(**kw: Any) -> dict[str, Any]:
    return {"name": "n", "public_key": KEYS[0].hex(), "power": 1, **kw}


@pytest.mark.parametrize(
    ("changes", "msg"),
    [
        ({"chain_id": "Medchain"}, r"chain_id must match \[a-z0-9\]\[a-z0-9-\]\{0,63\}"),
        ({"chain_id": ""}, "chain_id must match"),
        ({"chain_id": "-x"}, "chain_id must match"),
        ({"chain_id": "x" * 65}, "chain_id must match"),
        ({"chain_id": 5}, "chain_id must match"),
        ({"chain_id": None}, "chain_id must match"),
        ({"genesis_time_ms": -1}, "genesis_time_ms must be a non-negative integer"),
        ({"genesis_time_ms": 1.5}, "genesis_time_ms must be"),
        ({"genesis_time_ms": "0"}, "genesis_time_ms must be"),
        ({"genesis_time_ms": True}, "genesis_time_ms must be"),
        ({"authorities": []}, "authorities must be a non-empty list"),
        ({"authorities": {}}, "authorities must be a non-empty list"),
        ({"authorities": None}, "authorities must be a non-empty list"),
        ({"authorities": ["x"]}, "authority 0 must be an object"),
        ({"authorities": [_auth(name="")]}, "authority 0 needs a name of 1..64 characters"),
        ({"authorities": [_auth(name="n" * 65)]}, "authority 0 needs a name"),
        ({"authorities": [_auth(name=3)]}, "authority 0 needs a name"),
        (
            {"authorities": [{"name": "n"}]},
            r"authority 0 has no valid public_key \(expected 32 bytes hex\)",
        ),
        ({"authorities": [_auth(public_key="zz" * 32)]}, "authority 0 has no valid public_key"),
        ({"authorities": [_auth(public_key="00" * 31)]}, "authority 0 has no valid public_key"),
        ({"authorities": [_auth(public_key="00" * 33)]}, "authority 0 has no valid public_key"),
        ({"authorities": [_auth(public_key=5)]}, "authority 0 has no valid public_key"),
        (
            {"authorities": [_auth(), _auth(name="m", public_key=KEYS[0].hex().upper())]},
            "authority 1 repeats a public key",
        ),
        ({"authorities": [_auth(power=0)]}, r"authority 0 power must be an integer in 1..100"),
        ({"authorities": [_auth(power=-1)]}, "authority 0 power must be"),
        ({"authorities": [_auth(power=1_000_001)]}, "authority 0 power must be"),
        ({"authorities": [_auth(power=1.0)]}, "authority 0 power must be"),
        ({"authorities": [_auth(power=True)]}, "authority 0 power must be"),
        ({"authorities": [_auth(power="1")]}, "authority 0 power must be"),
        ({"params": []}, "params must be an object"),
        ({"params": {"max_block_gas": 1}}, r"unknown param\(s\) \['max_block_gas'\]"),
        ({"params": {"max_block_txs": 0}}, "params.max_block_txs must be a positive integer"),
        ({"params": {"max_block_bytes": "1"}}, "params.max_block_bytes must be a positive integer"),
        ({"params": {"max_block_txs": 1.0}}, "params.max_block_txs must be"),
        ({"consensus": {}}, r"unknown field\(s\) \['consensus'\]"),
        ({"chainid": "x", "zeta": 1}, r"unknown field\(s\) \['chainid', 'zeta'\]"),
    ],
)
def test_errors(changes: dict[str, Any], msg: str) -> None:
    with pytest.raises(ConfigError, match=f"^g.json: {msg}"):
        parse(doc(**changes))


def test_missing_fields() -> None:
    for field, msg in (
        ("chain_id", "chain_id"),
        ("genesis_time_ms", "genesis_time_ms"),
        ("authorities", "authorities"),
    ):
        d = doc()
        del d[field]
        with pytest.raises(ConfigError, match=msg):
            parse(d)


# ------------------------------------------------------------------ known bugs


@pytest.mark.parametrize(
    "changes",
    [{"genesis_time_ms": 2**64}, {"params": {"max_block_txs": 2**64}}],
    ids=["time", "param"],
)
def test_out_of_range_integers_are_config_errors(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        parse(doc(**changes))


def test_unencodable_name_is_a_config_error() -> None:
    text = json.dumps(doc(authorities=[_auth(name="\ud800")]))
    with pytest.raises(ConfigError):
        Genesis.from_json(text)


def test_chain_id_with_trailing_newline_is_rejected() -> None:
    with pytest.raises(ConfigError):
        parse(doc(chain_id="medchain\n"))


def test_key_length_check_survives_python_O() -> None:
    code = (
        "import json; from medchaind.types import Genesis\n"
        "from medchaind.errors import ConfigError\n"
        "d = {'chain_id': 'a', 'genesis_time_ms': 0, 'authorities': [{'public_key': '00'}]}\n"
        "try:\n    Genesis.from_json(json.dumps(d))\nexcept ConfigError:\n    raise SystemExit(0)\n"
        "raise SystemExit(3)\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run(
        [sys.executable, "-O", "-c", code],
        env={"PYTHONPATH": root},
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode in (0, 3), proc.stderr.decode()  # anything else: crashed
    assert proc.returncode == 0, "python -O accepted a 1-byte authority public key"


def test_duplicate_json_keys_are_rejected() -> None:
    text = json.dumps(doc())
    text = text.replace(
        '"chain_id": "medchain-dev"', '"chain_id": "medchain-a", "chain_id": "medchain-dev"'
    )
    with pytest.raises(ConfigError):
        Genesis.from_json(text)
