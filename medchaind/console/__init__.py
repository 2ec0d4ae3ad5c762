"""The web console: read-only pages over a running node (DESIGN.md §2 ``console/``).

Off unless ``[console] listen`` is set; token-gated (``<datadir>/console.token``); served
by hypercorn's trio worker inside the node's nursery (:mod:`.server`). Modules bring their
own views (``medchaind/modules/<name>/console.py``, :mod:`.kit`). docs/console.md.
"""
