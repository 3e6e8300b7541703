"""TCP sockets in a given state, from the kernel's sock_diag netlink interface (what ``ss`` uses).

/proc/net/tcp lists every socket, TIME_WAIT included: on a host under load it holds tens of thousands of
lines (66,000 = 8.7 MB, 0.15 s just to read, on the test bed after a benchmark), read on every port check.
Asked through netlink, the kernel filters by state itself, so finding the few listening sockets costs about
a millisecond whatever the load. ``sockets(states)`` returns None when netlink is not available (not
Linux, a seccomp profile): the caller then reads /proc/net/tcp (host/procfs.py).
"""
from __future__ import annotations

import socket
import struct
from typing import NamedTuple

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_ESTABLISHED, TCP_LISTEN = 1, 10

_NLMSGHDR = struct.Struct("=IHHII")             # len, type, flags, seq, pid
_REQ = struct.Struct("=BBBBI48s")               # inet_diag_req_v2: family, protocol, ext, pad, states, id
_MSG = struct.Struct("=BBBB2s2s44xIIIII")      # inet_diag_msg (72 bytes, see _parse)


class Sock(NamedTuple):
    state: int      # TCP_LISTEN, TCP_ESTABLISHED ...
    local_port: int
    remote_port: int
    inode: int


def _parse(msg: bytes) -> Sock:
    # inet_diag_msg: family, state, timer, retrans; sockid {sport be16, dport be16, src[16], dst[16], if u32,
    # cookie u64}; expires, rqueue, wqueue, uid, inode (u32 each)
    _, state, _, _, sport, dport, _, _, _, _, inode = _MSG.unpack_from(msg)
    return Sock(state, int.from_bytes(sport, "big"), int.from_bytes(dport, "big"), inode)


def sockets(states: int) -> list[Sock] | None:
    """TCP sockets (IPv4 and IPv6) whose state bit is in ``states`` (e.g. ``1 << TCP_LISTEN``), or None."""
    found: list[Sock] = []
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
            nl.settimeout(2)
            for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), 1):
                req = _REQ.pack(family, socket.IPPROTO_TCP, 0, 0, states, b"\0" * 48)
                nl.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(req), SOCK_DIAG_BY_FAMILY,
                                       NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + req)
                if not _read_dump(nl, found):
                    return None
    except (OSError, AttributeError, struct.error):   # AttributeError: no AF_NETLINK (not Linux)
        return None
    return found


def _read_dump(nl: socket.socket, found: list[Sock]) -> bool:
    """Read one dump's messages into ``found``; False on a netlink error."""
    while True:
        data = nl.recv(1 << 16)
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size:
                return False
            if kind == NLMSG_DONE:
                return True
            if kind == NLMSG_ERROR:
                return False
            if kind == SOCK_DIAG_BY_FAMILY:
                found.append(_parse(data[offset + _NLMSGHDR.size:offset + length]))
            offset += (length + 3) & ~3
