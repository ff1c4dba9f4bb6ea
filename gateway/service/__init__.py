"""The service: one running gateway, built from the config, started and stopped in order.

`Service` (in `service`) is the door; `paths` says where a configured gateway keeps
its files, `police` wires the police loop, `status` computes the facts of the
status document that the running service and the offline `alarmgw status` share.
"""

from gateway.service.paths import socket_path, store_path
from gateway.service.service import Service

__all__ = ["Service", "socket_path", "store_path"]
