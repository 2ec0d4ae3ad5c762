"""Drive client flows against the app harness: a node without sockets.

The claims tests' :class:`FlowNode` is :class:`medchaind.testing.flownode.FlowNode`
in batching mode: txs submitted without waiting queue up and commit together in one
block at the first ``tx_wait``, as a node would batch them; queries see a clock a
second past the last block.
"""

from __future__ import annotations

from medchaind.testing import flownode
from medchaind.testing.appkit import AppChain


class FlowNode(flownode.FlowNode):
    def __init__(self, chain: AppChain) -> None:
        super().__init__(chain, batch=True, clock_ms=lambda: chain.time_ms + 1000)
