"""Read replicas: reads routed to streaming replicas that are fresh enough, else the primary.

``Database(url, replica_urls=[...])`` gives `Database.read_session` a choice of server per
unit of work (`sessionwise.replicas.routing`), made from what a lag monitor measures by WAL
position (`sessionwise.replicas.monitor`). `Database.session` always runs on the primary.
Read-your-writes is a `WalPosition` (`sessionwise.replicas.positions`): read after a commit
(`Database.primary_position`, or stored with `CURRENT_WRITE_POSITION`), and asked for with
``db.read_session(fresh_as=position)`` or `read_at_least`. The guarantees and their tests are
in ``docs/scaling.md``.
"""

from sessionwise.replicas.monitor import ReplicaStatus
from sessionwise.replicas.positions import CURRENT_WRITE_POSITION, WalPosition
from sessionwise.replicas.routing import is_routed, read_at_least, routed_server

__all__ = [
    "CURRENT_WRITE_POSITION",
    "ReplicaStatus",
    "WalPosition",
    "is_routed",
    "read_at_least",
    "routed_server",
]
