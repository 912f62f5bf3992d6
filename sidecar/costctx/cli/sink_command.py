"""`costctx sink`: a stand-in collector for a local trial. Listens for OTLP on gRPC and HTTP,
prints what arrives (the debug exporter's verbosities) and, with --record, appends each request
to a file as one OTLP/JSON line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import TYPE_CHECKING, TextIO

from costctx.pdata.describe import VERBOSITIES, describe

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from costctx.pdata.signals import Signal

# The sink itself (its gRPC and HTTP servers) is imported when it runs: `costctx run` builds
# this parser too and should not carry it.

DEFAULT_GRPC = "127.0.0.1:14317"  # beside a sidecar on 4317/4318: the starter config forwards here
DEFAULT_HTTP = "127.0.0.1:14318"


def add_sink_parser(sub) -> None:
    sink = sub.add_parser("sink", help="a stand-in collector: listen for OTLP and print what arrives")
    sink.add_argument("--grpc", default=DEFAULT_GRPC, metavar="HOST:PORT",
                      help=f"gRPC endpoint (default {DEFAULT_GRPC})")
    sink.add_argument("--http", default=DEFAULT_HTTP, metavar="HOST:PORT",
                      help=f"HTTP endpoint, /v1/{{traces,metrics,logs}} (default {DEFAULT_HTTP}); 'off' for none")
    sink.add_argument("--verbosity", choices=VERBOSITIES, default="normal",
                      help="basic: a count per request; normal: a line per span (default); detailed: all")
    sink.add_argument("--record", metavar="FILE", help="append each request to FILE as a line of OTLP/JSON")
    sink.set_defaults(func=cmd_sink)


class Printer:
    """Prints, and optionally records, each request; one request's lines are kept together."""

    def __init__(self, out: TextIO, verbosity: str, record: TextIO | None) -> None:
        self.out = out
        self.verbosity = verbosity
        self.record = record
        self._lock = threading.Lock()

    def __call__(self, signal_: Signal, message: Message) -> None:
        from google.protobuf import json_format

        lines = describe(signal_, message, self.verbosity)
        with self._lock:
            self.out.write("".join(line + "\n" for line in lines))
            self.out.flush()
            if self.record is not None:
                request = json_format.MessageToDict(message)
                self.record.write(json.dumps({"signal": signal_.name, "request": request}) + "\n")
                self.record.flush()


def cmd_sink(args: argparse.Namespace) -> int:
    from costctx.cli.sink import OtlpSink
    from costctx.config.types import split_host_port

    try:
        grpc_host, grpc_port = split_host_port(args.grpc)
        http = None if args.http == "off" else split_host_port(args.http)
    except ValueError as exc:
        print(f"costctx sink: {exc}", file=sys.stderr)
        return 2
    record = open(args.record, "a", encoding="utf-8") if args.record else None  # noqa: SIM115 - closed below
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sink = OtlpSink(grpc_host, grpc_port, http[1] if http else None,
                    on_request=Printer(sys.stdout, args.verbosity, record), http_host=http[0] if http else None)
    try:
        sink.start()
    except (OSError, RuntimeError) as exc:  # a port taken
        print(f"costctx sink: cannot listen: {exc}", file=sys.stderr)
        return 1
    where = f"grpc={grpc_host}:{sink.grpc_port}" + (f" http={http[0]}:{sink.http_port}" if http else "")
    print(f"costctx sink: listening {where}; printing what arrives (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        stop.wait()
    finally:
        sink.stop()
        if record is not None:
            record.close()
    return 0
