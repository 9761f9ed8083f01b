"""A notify socket like systemd's (Type=notify), and reading what the assistant tells it."""

from __future__ import annotations

import asyncio
import signal
import socket
from dataclasses import dataclass
from pathlib import Path


def notify_socket(path: Path) -> socket.socket:
    """A datagram socket bound at `path`, which any user may send to (NOTIFY_SOCKET)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    path.chmod(0o777)
    sock.setblocking(False)
    return sock


async def messages_until(sock: socket.socket, wanted: str, timeout: float) -> list[str]:
    """Every message up to and including the first that contains `wanted`."""
    loop = asyncio.get_running_loop()
    messages: list[str] = []
    async with asyncio.timeout(timeout):
        while not any(wanted in m for m in messages):
            messages.append((await loop.sock_recv(sock, 4096)).decode())
    return messages


@dataclass(frozen=True, slots=True)
class Stopped:
    """What a service said from its start to its exit, as systemd would have heard it."""

    started: list[str]
    """Messages up to READY=1 (and up to `then`, when asked for)."""
    stopping: list[str]
    """Messages after SIGTERM, up to STOPPING=1."""
    returncode: int
    stderr: str


async def ready_then_stopped(
    process: asyncio.subprocess.Process,
    sock: socket.socket,
    ready_within: float,
    then: str | None = None,
) -> Stopped:
    """Wait for READY=1 (then for a message containing `then`), stop it with SIGTERM as
    `systemctl stop` does, and wait for STOPPING=1 and its exit; killed if it hangs."""
    try:
        started = await messages_until(sock, "READY=1", ready_within)
        if then is not None:
            started += await messages_until(sock, then, 10)
        process.send_signal(signal.SIGTERM)
        stopping = await messages_until(sock, "STOPPING=1", 10)
        _, stderr = await asyncio.wait_for(process.communicate(), 15)
    except TimeoutError:
        if process.returncode is None:
            process.kill()
        _, stderr = await process.communicate()
        raise AssertionError(
            f"no message in time; exit {process.returncode}:\n{stderr.decode()[-3000:]}"
        ) from None
    return Stopped(started, stopping, process.returncode or 0, stderr.decode())
