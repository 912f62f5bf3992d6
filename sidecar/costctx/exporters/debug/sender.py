"""The `debug` exporter's sender: logs what it would send and sends nothing (the Collector's
`debug` exporter). What `costctx run` uses when no downstream is configured."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from costctx.exporters.debug.config import DebugExporterConfig
from costctx.exporters.exporterhelper.errors import PermanentSendError
from costctx.pdata.describe import describe
from costctx.pdata.signals import Signal

if TYPE_CHECKING:
    from google.protobuf.message import Message

log = logging.getLogger("costctx.exporter.debug")


class DebugSender:
    def __init__(self, config: DebugExporterConfig) -> None:
        self.verbosity = config.verbosity
        self.description = f"debug (logs each batch, verbosity {config.verbosity}; sends nothing)"

    async def start(self) -> None:
        pass

    async def send(self, signal: Signal, payload: bytes) -> Message:
        message = signal.request_type()
        try:
            message.ParseFromString(payload)
        except Exception as exc:  # noqa: BLE001 - the queue only holds what a receiver parsed
            raise PermanentSendError(f"debug: unreadable batch: {exc}") from None
        for line in describe(signal, message, self.verbosity):
            log.info("%s", line)
        return signal.response_type()

    async def close(self) -> None:
        pass
