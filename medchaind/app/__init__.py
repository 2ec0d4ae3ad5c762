"""The pure application state machine (DESIGN.md §2 ``app/``)."""

from .app import App as App
from .app import Execution as Execution
from .app import default_modules as default_modules
from .module import BlockInfo as BlockInfo
from .module import Module as Module
from .module import QueryError as QueryError
from .module import TxFailed as TxFailed
from .state import DictState as DictState
from .state import StateOverlay as StateOverlay
from .state import StateReader as StateReader
