"""Child processes of the local stack: started with their own log file, stopped on teardown."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

import requests


class StackError(RuntimeError):
    """Something of the stack did not start; the message says what and where its log is."""


class Process:
    """One child process, its output in `log`."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path):
        self.name = name
        self.log = logs / f"{name}.log"
        self._log_file = self.log.open("wb")
        try:
            self._popen = subprocess.Popen(
                argv,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as err:
            self._log_file.close()
            raise StackError(f"cannot start {name} ({argv[0]}): {err}") from err

    def running(self) -> bool:
        return self._popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise StackError(f"{self.name} exited with {self._popen.returncode} before {what}:\n{self.tail()}")
            if ready():
                return
            time.sleep(0.05)
        raise StackError(f"{self.name}: no {what} after {timeout:.0f}s (log {self.log}):\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM (the services drain gracefully, as on Cloud Run), then SIGKILL."""
        if self.running():
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        self._log_file.close()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_loopback_on_port_80() -> str:
    """A fresh 127.x.y.z whose port 80 is free (fake-gcs-server must listen on port 80)."""
    for _ in range(50):
        host = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
        with socket.socket() as sock:
            try:
                sock.bind((host, 80))
            except OSError:
                continue
            return host
    raise StackError("no free loopback address with port 80 (fake-gcs-server needs port 80: run as root)")


def answers(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return requests.get(url, timeout=1).ok
        except requests.RequestException:
            return False

    return check
