"""A real mosquitto broker on a free port that a test can kill (SIGKILL) and restart."""

from __future__ import annotations

from pathlib import Path

from controller.broker import LocalBroker, free_port, mosquitto_binary

__all__ = ["MosquittoBroker", "free_port", "mosquitto_binary"]


class MosquittoBroker(LocalBroker):
    """The demo's local broker, saving persistence after every change: a test that SIGKILLs
    it must find every acknowledged message again after the restart."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "") -> None:
        super().__init__(workdir, port, extra_conf, save_every_change=True)
