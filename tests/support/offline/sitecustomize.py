"""Refuse every connection that would leave the machine, and record the attempt.

Put this folder first on ``PYTHONPATH`` of a subprocess and set
``FIXEDMODEL_NETWORK_ATTEMPTS`` to a file path: Python imports ``sitecustomize`` at start-up,
so every ``socket.getaddrinfo`` of a host name that is not loopback and every
``socket.connect`` to an address outside 127.0.0.0/8 and ::1 fails with ``OSError`` and
appends one line (what was asked for) to that file. A test asserts the file stays empty.
Unix sockets and loopback addresses work as usual, so a loopback test server still answers.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

_LOG = os.environ.get("FIXEDMODEL_NETWORK_ATTEMPTS", "")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _record(what: str) -> None:
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as log:
            log.write(what + "\n")


def _is_loopback(host: object) -> bool:
    if host is None:
        return True  # getaddrinfo(None, port): the local wildcard, used to bind
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _is_loopback(host):
        _record(f"getaddrinfo {host!r}")
        raise socket.gaierror(socket.EAI_NONAME, f"network blocked in this test: {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


def _allowed(sock: socket.socket, address: Any) -> bool:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return True
    return _is_loopback(address[0])


def _connect(self: socket.socket, address: Any) -> None:
    if not _allowed(self, address):
        _record(f"connect {address!r}")
        raise ConnectionRefusedError(f"network blocked in this test: {address!r}")
    return _real_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    if not _allowed(self, address):
        _record(f"connect_ex {address!r}")
        raise ConnectionRefusedError(f"network blocked in this test: {address!r}")
    return _real_connect_ex(self, address)


socket.getaddrinfo = _getaddrinfo
socket.socket.connect = _connect  # type: ignore[method-assign]  # the point of this module
socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]  # the same
