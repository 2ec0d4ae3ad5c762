"""Drive client flows against the app harness: a node without sockets.

The supply tests' :class:`FlowNode` is :class:`medchaind.testing.flownode.FlowNode`
as it comes: each submitted tx is committed in a block of its own.
"""

from __future__ import annotations

from medchaind.testing.flownode import FlowNode

__all__ = ["FlowNode"]
