"""The relay tree: a sans-IO core per node (election, parent choice, loop freedom) and tree broadcast.

This package must never open sockets or start event loops; drivers and the simulator feed it.
"""

from .core import TreeNode
from .outputs import BadMessage, Output, TreeChanged, TreeTimers
from .cost import LinkCostInputs, link_cost
from .forward import Broadcast, Forwarder, Forwarded
from .messages import Request, TreeMessageError, Update, decode, encode

__all__ = [
    "BadMessage", "Broadcast", "Forwarded", "Forwarder", "LinkCostInputs", "Output", "Request",
    "TreeChanged", "TreeMessageError", "TreeNode", "TreeTimers", "Update", "decode", "encode", "link_cost",
]
