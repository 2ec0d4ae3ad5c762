"""The pure module framework of the state machine (DESIGN.md §2 ``app/``).

The application modules themselves live in :mod:`medchaind.modules`, one package each;
this package knows none of them by name.
"""

from .app import App as App
from .app import Execution as Execution
from .module import Attach as Attach
from .module import BlobSpec as BlobSpec
from .module import BlockInfo as BlockInfo
from .module import DropBlob as DropBlob
from .module import Module as Module
from .module import QueryContext as QueryContext
from .module import QueryError as QueryError
from .module import QuerySpec as QuerySpec
from .module import TopicSpec as TopicSpec
from .module import TxContext as TxContext
from .module import TxFailed as TxFailed
from .module import TxSpec as TxSpec
from .module import WantBlob as WantBlob
from .state import DictState as DictState
from .state import StateOverlay as StateOverlay
from .state import StateReader as StateReader
