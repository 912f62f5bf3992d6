"""`costctx survival`: fetch /survival from a running sidecar and render it; and the demo's section."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error  # light; urllib.request (http.client, email, ssl) is imported when fetching
from typing import Any, TextIO

from costctx.survival.render import render_report

DEFAULT_URL = "http://127.0.0.1:8888"


def survival_url(url: str) -> str:
    """Accept the telemetry address with or without the /survival path (and without a scheme)."""
    if "://" not in url:
        url = f"http://{url}"
    url = url.rstrip("/")
    return url if url.endswith("/survival") else f"{url}/survival"


def fetch_report(url: str, token: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    import urllib.request

    request = urllib.request.Request(survival_url(url))
    if token:
        # When the sidecar has bearertokenauth, /survival needs the token (/healthz does not).
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


# ANSI: cursor home and clear screen, as `watch` redraws.
CLEAR_SCREEN = "\x1b[H\x1b[2J"


def watch_command(args: argparse.Namespace, out: TextIO, sleep=time.sleep) -> int:
    """Redraw every `--watch` seconds until interrupted (or `--count` redraws). An unreachable
    sidecar is shown on the screen and retried, not fatal: the pod may be restarting."""
    drawn = 0
    try:
        while args.count is None or drawn < args.count:
            header = f"Every {args.watch:g}s: costctx survival {survival_url(args.url)}  {time.strftime('%H:%M:%S')}"
            try:
                body = render_report(fetch_report(args.url, args.token), include_spend=args.spend)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                body = f"cannot read {survival_url(args.url)}: {getattr(exc, 'reason', exc)}\n"
            out.write(f"{CLEAR_SCREEN}{header}\n\n{body}")
            out.flush()
            drawn += 1
            if args.count is None or drawn < args.count:
                sleep(args.watch)
    except KeyboardInterrupt:
        out.write("\n")
    return 0


def survival_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.watch is not None:
        if args.json:
            print("costctx survival: --watch redraws the table; it does not combine with --json", file=sys.stderr)
            return 2
        return watch_command(args, out)
    try:
        report = fetch_report(args.url, args.token)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"costctx survival: cannot read {survival_url(args.url)}: {reason}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        out.write(render_report(report, include_spend=args.spend))
    return 0


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def add_survival_parser(sub: argparse._SubParsersAction) -> None:
    survival = sub.add_parser("survival", help="show which hop drops which field, and the readiness verdicts")
    survival.add_argument("--url", default=DEFAULT_URL, help=f"the sidecar's telemetry address (default {DEFAULT_URL})")
    survival.add_argument("--token", default=os.environ.get("COSTCTX_TOKEN"),
                          help="bearer token, when the sidecar requires one (default: $COSTCTX_TOKEN)")
    survival.add_argument("--json", action="store_true", help="print the /survival document as JSON")
    survival.add_argument("--spend", action="store_true", help="also show spend by workflow and tenant")
    survival.add_argument("--watch", nargs="?", type=_positive_seconds, const=2.0, default=None, metavar="SECONDS",
                          help="redraw every SECONDS (default 2), as `watch` would; Ctrl-C stops")
    survival.add_argument("--count", type=int, default=None, help="with --watch: stop after this many redraws")
    survival.set_defaults(func=survival_command)


def demo_section(runner, sink, out: TextIO) -> None:
    """The demo's closing section: the matrix, the verdicts and spend, read over /survival."""
    report = fetch_report(f"127.0.0.1:{runner.sidecar.admin_port}")
    print("", file=out)
    out.write(render_report(report, include_spend=True))
