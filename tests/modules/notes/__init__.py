"""A small example module that lives in the test tree only (tests/modules/test_plugin_module.py).

It proves the plug-in shape: a tx type, a query, a subscription topic, a client helper and
a CLI command, added to a node by ``MEDCHAIND_EXTRA_MODULES=notes.machine:NotesModule``
without editing any file under ``medchaind/``.
"""

from .machine import NotesModule as NotesModule
