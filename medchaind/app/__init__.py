"""The pure application state machine (DESIGN.md §2 ``app/``)."""

from .app import App as App, Execution as Execution, default_modules as default_modules
from .module import BlockInfo as BlockInfo, Module as Module, QueryError as QueryError, TxFailed as TxFailed
from .state import DictState as DictState, StateOverlay as StateOverlay, StateReader as StateReader
