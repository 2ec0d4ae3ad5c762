"""The application modules: the registry (DESIGN.md §2 ``modules/``).

:data:`MODULES` is the one place the node, the mempool, the IPC server and the CLIs
learn which application modules exist. Each module is a package
``medchaind/modules/<name>/`` with

* ``machine.py``: the PURE state machine: typed tx bodies, handlers, declared queries,
  subscription topics and host hooks (a :class:`medchaind.app.Module` subclass);
* ``client.py`` (optional): its client helpers, written once as sans-IO flows
  (``HELPERS``); :class:`medchaind.client.Client` and ``AsyncClient`` both serve them;
* ``cli.py`` (optional): its ``medchain <module> ...`` click commands (``commands``).

Adding a module is one package and one line below (docs/writing-a-module.md).
The set of modules is part of the chain's rules: every node of a chain must run the
same list, in the same order. For development, ``MEDCHAIND_EXTRA_MODULES`` (a
comma-separated list of ``package.module:Class``) adds modules that are not built in; the
node logs them at start and reports them in ``node_info``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence

from ..app import App, Module
from ..errors import ConfigError
from ..types.genesis import Genesis
from .anchor import AnchorModule
from .claims import ClaimsModule
from .consent import ConsentModule
from .governance import GovernanceModule
from .identity import IdentityModule
from .records import RecordsModule
from .supply import SupplyModule
from .trials import TrialsModule

#: The registry: the built-in modules of a medchain chain, in dispatch order.
MODULES: tuple[type[Module], ...] = (
    IdentityModule,
    GovernanceModule,
    AnchorModule,
    ConsentModule,
    RecordsModule,
    SupplyModule,
    TrialsModule,
    ClaimsModule,
)

EXTRA_ENV = "MEDCHAIND_EXTRA_MODULES"


def load_class(ref: str) -> type[Module]:
    """``"package.module:Class"`` -> the Module subclass it names."""
    mod_name, sep, cls_name = ref.strip().partition(":")
    if not sep or not mod_name or not cls_name:
        raise ConfigError(f"{EXTRA_ENV}: {ref!r} is not of the form package.module:Class")
    try:
        obj = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{EXTRA_ENV}: cannot load {ref!r} ({exc})") from None
    if not (isinstance(obj, type) and issubclass(obj, Module)):
        raise ConfigError(f"{EXTRA_ENV}: {ref!r} is not a medchaind.app.Module subclass")
    return obj


def extra_module_refs() -> list[str]:
    return [x.strip() for x in os.environ.get(EXTRA_ENV, "").split(",") if x.strip()]


def module_classes(extra: Sequence[str] | None = None) -> list[type[Module]]:
    """The registry plus the extra modules (``extra``, default: from the environment)."""
    refs = extra_module_refs() if extra is None else list(extra)
    return [*MODULES, *(load_class(r) for r in refs)]


def load_modules(extra: Sequence[str] | None = None) -> list[Module]:
    """Fresh instances of every module of this chain."""
    return [cls() for cls in module_classes(extra)]


def make_app(genesis: Genesis, extra: Sequence[str] | None = None) -> App:
    """The state machine of a chain with ``genesis`` and every registered module."""
    return App(genesis, load_modules(extra))
