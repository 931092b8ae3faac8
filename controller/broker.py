"""A local mosquitto for the demo and the tests: loopback only, on a free port, with persistence."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def mosquitto_binary() -> str | None:
    """Path of the mosquitto executable, or None when it is not installed."""
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalBroker:
    """One mosquitto process with persistence in `workdir`; `kill()` is SIGKILL, `start()` restarts."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        extra_conf: str = "",
        *,
        save_every_change: bool = False,
    ) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (Debian package: mosquitto)")
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.extra_conf = extra_conf
        # Tests that SIGKILL the broker save after every change (slow: ~130 msg/s), the demo
        # once a second.
        self.save_every_change = save_every_change
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"

    def write_conf(self) -> None:
        """Loopback listener with persistence (every second, or every change when asked)."""
        persistence = self.workdir / "persist"
        persistence.mkdir(parents=True, exist_ok=True)
        base = (
            f"listener {self.port} 127.0.0.1\n"
            "persistence true\n"
            f"persistence_location {persistence}/\n"
            "autosave_interval 1\n"
            + ("autosave_on_changes true\n" if self.save_every_change else "")
            + "max_queued_messages 0\n"
            f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        if os.geteuid() == 0 and "\nuser " not in f"\n{self.extra_conf}":
            # as root mosquitto drops to user `mosquitto`, which cannot write persistence here
            base += "user root\n"
        if "allow_anonymous" not in self.extra_conf:
            base += "allow_anonymous true\n"
        self.conf_path.write_text(base + self.extra_conf)

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts TCP connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_conf()
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self.proc.returncode}: {self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the broker (no clean shutdown, like a power cut)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the broker cleanly (SIGTERM), killing it if it lingers."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of the broker log, for failure messages."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
