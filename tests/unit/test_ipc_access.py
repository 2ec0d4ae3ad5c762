"""IPC access control as a pure function (medchaind/ipc/access.py) and its configuration
(``[ipc]`` and ``[ipc.access.<name>]`` in config.toml, medchaind/node/config.py).

Callers are named by role; uids: node 1000 (the daemon's user), root 0, ehr 1001 (a
patient-app backend), billing 1002, audit 1003, stranger 1004; gid 2000 is the socket's
group, 2001 a "clinical" group.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medchaind.errors import ConfigError
from medchaind.ipc.access import (
    AccessPolicy,
    AccessRule,
    Grant,
    grant_for,
    namespace_of,
    unknown_namespaces,
)
from medchaind.node.config import (
    DEFAULT_IPC_NAMESPACES,
    Config,
    ipc_access_policy,
    ipc_server_options,
    load_config,
    render_config,
)

NODE, ROOT, EHR, BILLING, AUDIT, STRANGER = 1000, 0, 1001, 1002, 1003, 1004
SOCKET_GROUP, CLINICAL = 2000, 2001

POLICY = AccessPolicy(
    owner_uids=frozenset({NODE, ROOT}),
    others=frozenset(DEFAULT_IPC_NAMESPACES),
    rules=(
        AccessRule("ehr", frozenset({"records", "consent", "identity"}), uids=frozenset({EHR})),
        AccessRule("billing", frozenset({"claims"}), uids=frozenset({BILLING})),
        AccessRule("clinical", frozenset({"records", "audit"}), gids=frozenset({CLINICAL})),
        AccessRule("ops", frozenset({"*"}), uids=frozenset({AUDIT}), gids=frozenset({9999})),
    ),
)


@pytest.mark.parametrize(
    ("uid", "gids", "allowed", "denied"),
    [
        # the node's own user and root: everything, admin included
        (NODE, (SOCKET_GROUP,), {"admin", "records", "audit", "chain", "anything"}, set()),
        (ROOT, (ROOT,), {"admin", "records"}, set()),
        # another user on the socket's group: the default set, no module queries, no admin
        (STRANGER, (SOCKET_GROUP,), {"node", "chain", "tx", "mempool", "consensus", "rpc"},
         {"admin", "records", "audit", "consent", "identity", "claims"}),
        # a rule by uid adds to the default set
        (EHR, (SOCKET_GROUP,), {"records", "consent", "identity", "chain", "tx"}, {"admin", "audit", "claims"}),
        (BILLING, (SOCKET_GROUP,), {"claims", "tx"}, {"records", "admin"}),
        # a rule by (supplementary) gid; and rules add up
        (STRANGER, (SOCKET_GROUP, CLINICAL), {"records", "audit", "chain"}, {"admin", "consent"}),
        (EHR, (CLINICAL,), {"records", "audit", "consent", "identity"}, {"admin", "claims"}),
        # "*" grants everything, but not the owners' reserved connection slots
        (AUDIT, (), {"admin", "records", "whatever"}, set()),
        # unknown peer credentials: treated as everyone else, never as an owner
        (None, (), {"chain"}, {"admin", "records"}),
    ],
)
def test_grant_for(uid: int | None, gids: tuple[int, ...], allowed: set[str], denied: set[str]) -> None:
    grant = grant_for(POLICY, uid, gids)
    assert grant.owner == (uid in (NODE, ROOT))
    assert {ns for ns in allowed if grant.allows(ns)} == allowed
    assert {ns for ns in denied if grant.allows(ns)} == set()
    assert grant.allows(None)  # subscribe / unsubscribe: topics are checked one by one
    assert grant.allows("rpc")  # rpc_modules: what may I call?


def test_grant_names_the_rules_and_describes_itself() -> None:
    grant = grant_for(POLICY, EHR, (CLINICAL,))
    assert grant.rules == ("ehr", "clinical")
    assert grant.describe() == "audit, chain, consensus, consent, identity, mempool, node, records, rpc, tx"
    assert grant_for(POLICY, NODE).describe() == "everything"
    assert grant_for(AccessPolicy(owner_uids=frozenset()), STRANGER).describe() == "rpc"


def test_no_rules_no_default_means_only_rpc() -> None:
    grant = grant_for(AccessPolicy(owner_uids=frozenset({NODE})), STRANGER, (SOCKET_GROUP,))
    assert grant == Grant(frozenset(), owner=False, rules=())
    assert [ns for ns in ("rpc", "chain", "admin") if grant.allows(ns)] == ["rpc"]


@pytest.mark.parametrize(
    ("method", "namespace"),
    [("records_get", "records"), ("audit_log", "audit"), ("chain_getBlock", "chain"),
     ("subscribe", None), ("rpc_modules", "rpc"), ("a_b_c", "a")],
)
def test_namespace_of(method: str, namespace: str | None) -> None:
    assert namespace_of(method) == namespace


def test_unknown_namespaces_are_reported_with_where() -> None:
    policy = AccessPolicy(
        owner_uids=frozenset(),
        others=frozenset({"chain", "chian"}),
        rules=(AccessRule("ehr", frozenset({"recrods", "records", "*"}), uids=frozenset({EHR})),),
    )
    assert unknown_namespaces(policy, ["chain", "records"]) == [
        "ipc.default_namespaces: chian",
        "ipc.access.ehr: recrods",
    ]


# ---------------------------------------------------------------- configuration


def _config(tmp_path: Path, toml: str, env: dict[str, str] | None = None) -> Config:
    (tmp_path / "config.toml").write_text(toml)
    return load_config(tmp_path, env=env or {})


def test_access_tables_read_well_in_toml(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={})
    assert cfg.ipc.default_namespaces == DEFAULT_IPC_NAMESPACES and cfg.ipc_access == ()
    (tmp_path / "config.toml").write_text(
        """
[ipc]
group = "medchaind"
default_namespaces = ["node", "chain", "tx"]

[ipc.access.ehr]          # the patient-app backend
users = ["root", 1001]
namespaces = ["records", "consent", "identity"]

[ipc.access.billing]
groups = ["root", "2002"]
namespaces = ["claims"]
"""
    )
    cfg = load_config(tmp_path, env={})
    assert cfg.ipc.default_namespaces == ("node", "chain", "tx")
    assert cfg.ipc_access == (
        AccessRule("ehr", frozenset({"records", "consent", "identity"}), uids=frozenset({0, 1001})),
        AccessRule("billing", frozenset({"claims"}), gids=frozenset({0, 2002})),
    )
    policy = ipc_access_policy(cfg, owner_uid=NODE)
    assert policy.owner_uids == {NODE, 0} and policy.others == {"node", "chain", "tx"}
    # what init writes reads back the same
    (tmp_path / "config.toml").write_text(render_config(cfg))
    again = load_config(tmp_path, env={})
    assert again.ipc == cfg.ipc and again.ipc_access == cfg.ipc_access


def test_default_namespaces_from_the_environment(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={"MEDCHAIND_IPC_DEFAULT_NAMESPACES": "chain, tx"})
    assert cfg.ipc.default_namespaces == ("chain", "tx")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[ipc.access.ehr]\nusers = ["no-such-user-x"]\nnamespaces = ["records"]', "no user 'no-such-user-x'"),
        ('[ipc.access.ehr]\ngroups = ["no-such-group-x"]\nnamespaces = ["records"]', "no group 'no-such-group-x'"),
        ('[ipc.access.ehr]\nnamespaces = ["records"]', "names no users or groups"),
        ('[ipc.access.ehr]\nusers = [1001]', "missing namespaces"),
        ('[ipc.access.ehr]\nusers = [1001]\nnamespaces = ["records_get"]', "'records_get' is not a namespace"),
        ('[ipc.access.ehr]\nusers = [1001]\nnamespaces = "records"', "expected a list of namespace names"),
        ('[ipc.access.ehr]\nusers = [1001]\nnamespace = ["records"]', "unknown setting(s) ['namespace']"),
        ('[ipc.access.ehr]\nusers = [-1]\nnamespaces = ["records"]', "-1 is not a user name"),
        ("[ipc]\naccess = 3", "expected tables [ipc.access.<name>]"),
        ('[ipc]\ndefault_namespaces = ["Admin"]', "'Admin' is not a namespace"),
        ("[ipc]\ndefault_namespaces = [1]", "expected a list of strings"),
        ("[ipc]\nmax_connections = 0", "ipc.max_connections must be in 1..65536 (got 0)"),
        ("[ipc]\nmax_connections = 8\nreserved_connections = 8", "ipc.reserved_connections must be in 0..7"),
        ("[ipc]\nread_timeout_ms = 0", "ipc.read_timeout_ms must be in 100..3600000 (got 0)"),
        ("[ipc]\nidle_timeout_ms = 10", "ipc.idle_timeout_ms must be in 1000..86400000 (got 10)"),
        ("[ipc]\nmax_request_bytes = 10", "ipc.max_request_bytes must be in 1024.."),
        ("[ipc]\nmax_reply_bytes = 1000", "ipc.max_reply_bytes must be in 65536.."),
        ("[ipc]\nsend_queue_bytes = 1048576", "at least ipc.max_reply_bytes, so one reply always fits"),
        ("[ipc]\nsend_queue_total_bytes = 1048576", "ipc.send_queue_total_bytes must be in 33554432.."),
    ],
)
def test_bad_ipc_settings_are_clear_errors(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, toml)
    assert message in str(err.value)


def test_server_options_refuse_unknown_namespaces(tmp_path: Path) -> None:
    cfg = _config(tmp_path, '[ipc.access.ehr]\nusers = [1001]\nnamespaces = ["recrods"]')
    with pytest.raises(ConfigError, match=r"unknown IPC namespace\(s\) \['ipc.access.ehr: recrods'\]"):
        ipc_server_options(cfg, [*DEFAULT_IPC_NAMESPACES, "records"])
    cfg = _config(tmp_path, '[ipc.access.ehr]\nusers = [1001]\nnamespaces = ["records"]\n[ipc]\nread_timeout_ms = 2500')
    options = ipc_server_options(cfg, [*DEFAULT_IPC_NAMESPACES, "records"])
    assert options["read_timeout"] == 2.5 and options["max_line_bytes"] == 16 * 1024 * 1024
    assert options["access"].rules[0].namespaces == {"records"}
