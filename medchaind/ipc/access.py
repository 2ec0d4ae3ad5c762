"""Who may call what over the IPC socket (DESIGN.md §7, §8): pure, no I/O.

Theory of operation
-------------------
The socket's file mode decides who may *connect* (0600: the node's own user; with
``ipc.group``: that group too). Once connected, the kernel tells the server who the
peer is (``SO_PEERCRED``: uid and gid; ``SO_PEERGROUPS``: supplementary groups), and
:func:`grant_for` turns that identity into a :class:`Grant`: the method *namespaces* the
connection may call. A method's namespace is the part of its name before the first
``_`` (``records_get`` -> ``records``, ``audit_log`` -> ``audit``); a subscription topic
belongs to the namespace of whoever publishes it (``newHeads`` -> ``chain``, ``patient``
-> ``records``). The grant is computed once per connection, when it is accepted.

The policy, most powerful first:

1. **Owners** (the node's own uid, and root) may call everything and may use the
   connection slots reserved for operators (see :class:`medchaind.ipc.IPCServer`).
2. **Rules** (:class:`AccessRule`, ``[ipc.access.<name>]`` in ``config.toml``): a caller
   whose uid, or any of whose gids, a rule names gets that rule's namespaces. Grants
   add up: a caller matched by several rules gets the union, on top of the default.
3. **Everyone else** who can reach the socket gets ``others`` (``ipc.default_namespaces``).

``rpc`` (``rpc_modules``: what may I call?) and the un-namespaced ``subscribe`` /
``unsubscribe`` are open to every caller; each topic is then checked against its
namespace. A refused call is an error naming the namespace (never a silent omission).

Invariants: the grant of a connection never changes while it is open; an unknown
identity (no ``SO_PEERCRED``) is treated as "everyone else", never as an owner; the
policy never widens what the socket's file mode allows (it only narrows it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ALWAYS_ALLOWED",
    "EVERYTHING",
    "FULL_GRANT",
    "AccessPolicy",
    "AccessRule",
    "Grant",
    "grant_for",
    "namespace_of",
    "unknown_namespaces",
]

#: A namespace entry that stands for every namespace (including ``admin``).
EVERYTHING = "*"
#: Namespaces every caller may use: ``rpc_modules`` tells a caller what it may call.
ALWAYS_ALLOWED = frozenset({"rpc"})
NAMESPACE_RE = re.compile(r"[a-z][A-Za-z0-9]{0,63}")


def namespace_of(method: str) -> str | None:
    """``"records_get"`` -> ``"records"``; a name without ``_`` has no namespace."""
    head, sep, _ = method.partition("_")
    return head if sep else None


@dataclass(frozen=True, slots=True)
class AccessRule:
    """Callers with one of ``uids`` or one of ``gids`` may call ``namespaces``."""

    name: str
    namespaces: frozenset[str]
    uids: frozenset[int] = frozenset()
    gids: frozenset[int] = frozenset()

    def matches(self, uid: int | None, gids: Iterable[int]) -> bool:
        return (uid is not None and uid in self.uids) or not self.gids.isdisjoint(gids)


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """``owner_uids`` may call everything; rules add to ``others`` (everyone else)."""

    owner_uids: frozenset[int]
    others: frozenset[str] = frozenset()
    rules: tuple[AccessRule, ...] = ()


@dataclass(frozen=True, slots=True)
class Grant:
    """What one connection may call."""

    namespaces: frozenset[str]
    #: the node's own user or root: everything, and the reserved connection slots
    owner: bool = False
    #: names of the rules that matched (for the log and ``rpc_modules`` debugging)
    rules: tuple[str, ...] = ()

    @property
    def everything(self) -> bool:
        return self.owner or EVERYTHING in self.namespaces

    def allows(self, namespace: str | None) -> bool:
        """Whether a method (or topic) of ``namespace`` may be called; ``None`` is open."""
        return namespace is None or namespace in ALWAYS_ALLOWED or self.everything or namespace in self.namespaces

    def describe(self) -> str:
        """``"everything"`` or the sorted namespaces, for error messages."""
        if self.everything:
            return "everything"
        return ", ".join(sorted(self.namespaces | ALWAYS_ALLOWED))


#: The grant of a server without a policy (tests, embedded use): everything.
FULL_GRANT = Grant(frozenset({EVERYTHING}), owner=True)


def grant_for(policy: AccessPolicy, uid: int | None, gids: Iterable[int] = ()) -> Grant:
    """The grant of a caller with ``uid`` and ``gids`` (primary and supplementary)."""
    if uid is not None and uid in policy.owner_uids:
        return Grant(frozenset({EVERYTHING}), owner=True)
    gid_set = frozenset(gids)
    matched = [rule for rule in policy.rules if rule.matches(uid, gid_set)]
    namespaces = policy.others.union(*(rule.namespaces for rule in matched))
    return Grant(namespaces, rules=tuple(rule.name for rule in matched))


def unknown_namespaces(policy: AccessPolicy, known: Iterable[str]) -> list[str]:
    """Namespaces the policy names that no method has (typos), as ``"where: name"``."""
    valid = set(known) | ALWAYS_ALLOWED | {EVERYTHING}
    out = [f"ipc.default_namespaces: {ns}" for ns in sorted(policy.others - valid)]
    for rule in policy.rules:
        out.extend(f"ipc.access.{rule.name}: {ns}" for ns in sorted(rule.namespaces - valid))
    return out
