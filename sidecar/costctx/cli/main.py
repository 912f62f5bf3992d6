"""The `costctx` command: run, validate, demo, price, survival, sink."""

from __future__ import annotations

import argparse
import logging
import sys

from costctx.cli.sink_command import add_sink_parser
from costctx.cli.survival import add_survival_parser
from costctx.extensions.bearertokenauth.tokens import TokenError
from costctx.service.config import ConfigError, load_config

EXIT_CONFIG = 2


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("costctx")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level={"warn": "WARNING"}.get(level, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _load(path: str | None):
    try:
        config = load_config(path)
    except ConfigError as exc:
        if len(exc.messages) > 1:
            listed = "".join(f"\n  {message}" for message in exc.messages)
            print(f"costctx: invalid config ({len(exc.messages)} errors):{listed}", file=sys.stderr)
        else:
            print(f"costctx: invalid config: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    _refuse_broken_price_files(config)
    from costctx.service.config.auth import unguarded_public_servers

    for warning in unguarded_public_servers(config):
        print(f"costctx: warning: {warning}", file=sys.stderr)
    return config


def file_problems(config) -> list[str]:
    """Files the config names (price tables, token files, TLS certificates and keys), loaded as
    `costctx run` loads them: validate and run refuse alike."""
    from costctx.cli.price import price_file_problems
    from costctx.service.config.files import referenced_file_problems

    return price_file_problems(config) + referenced_file_problems(config)


def _refuse_broken_price_files(config) -> None:
    """Price, token and TLS files are part of the config: validate and run load them and refuse alike."""
    problems = file_problems(config)
    for problem in problems:
        print(f"costctx: invalid config: {problem}", file=sys.stderr)
    if problems:
        raise SystemExit(EXIT_CONFIG)


def cmd_run(args: argparse.Namespace) -> int:
    from costctx.service import event_loop
    from costctx.service.runner import serve

    config = _load(args.config)
    _configure_logging(config.service.telemetry.logs.level)
    if args.config is None:
        _say_what_the_defaults_do(config)
    try:
        event_loop.run(serve(config, grace=args.grace))
    except (OSError, TokenError) as exc:  # a port taken, a certificate or token file unreadable
        logging.getLogger("costctx").error("cannot start: %s", exc)
        return 1
    return 0


def _say_what_the_defaults_do(config) -> None:
    from costctx.exporters.debug.config import DebugExporterConfig

    if any(isinstance(e, DebugExporterConfig) for e in config.exporters.values()):
        logging.getLogger("costctx").warning(
            "no --config and OTEL_EXPORTER_OTLP_ENDPOINT is not set: running on the built-in defaults "
            "with the debug exporter, which logs each batch and sends nothing (set the variable, or "
            "pass --config, e.g. the costctx.yaml at the repository root)"
        )


def cmd_validate(args: argparse.Namespace) -> int:
    config = _load(args.config)
    pipelines = ", ".join(
        f"{name}: [{', '.join(p.processors) or 'pass-through'}] -> {', '.join(p.exporters)}"
        for name, p in config.service.pipelines.items()
    )
    print(f"config OK ({args.config or 'built-in defaults'}): {pipelines}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from costctx.cli.budget_demo import demo_section as budget_section
    from costctx.cli.demo import run_demo
    from costctx.cli.demo_two import two_sidecars_section
    from costctx.cli.survival import demo_section as survival_section

    _configure_logging("warning")
    # The agent loop first, so the closing matrix, verdicts and spend include its spans too.
    status = run_demo(sys.stdout, extra_sections=[budget_section, survival_section])
    # Then service A and service B on two sidecars sharing a Redis.
    return status or two_sidecars_section(sys.stdout)


def cmd_price(args: argparse.Namespace) -> int:
    from costctx.cli.price import price_command

    if not args.model and not args.explain_span:
        print("costctx price: give --model (with token counts) or --explain-span", file=sys.stderr)
        return EXIT_CONFIG
    return price_command(args, _load(args.config) if args.config else None)


def _token_count(text: str) -> int:
    """A count of 0 or more: the price processor leaves a span with a negative count unpriced
    (`missing_tokens`), so `price` refuses one too rather than print a negative cost."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a token count") from None
    if count < 0:
        raise argparse.ArgumentTypeError(
            f"{count} is not a token count (0 or more; a span with it is left unpriced: missing_tokens)"
        )
    return count


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="costctx", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the sidecar")
    run.add_argument("--config", help="config file (Collector YAML shape); defaults if omitted")
    run.add_argument(
        "--grace", type=float, default=None, help="seconds to drain on SIGTERM (default: service.shutdown_grace, 10s)"
    )
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check a config and exit (status 2 if invalid)")
    validate.add_argument("--config", help="config file; the built-in defaults if omitted")
    validate.set_defaults(func=cmd_validate)

    demo = sub.add_parser("demo", help="run a sidecar, a sink and an agent workflow on embedded defaults")
    demo.set_defaults(func=cmd_demo)

    add_survival_parser(sub)
    add_sink_parser(sub)

    price = sub.add_parser("price", help="price one model call and show the rates and source used")
    price.add_argument("--model", help="model name as a span carries it, e.g. gpt-4o-2024-08-06")
    price.add_argument("--provider", help="gen_ai.provider.name (picks the cache-token mode, e.g. anthropic)")
    for flag, what in (("--input", "input tokens"), ("--output", "output tokens (reasoning included)"),
                       ("--cache-read", "cache-read input tokens"), ("--cache-creation", "cache-creation input tokens"),
                       ("--reasoning", "reasoning output tokens")):
        price.add_argument(flag, type=_token_count, default=0, metavar="N", help=f"{what} (default 0)")
    for flag, what in (("--image-input", "input tokens that were images"),
                       ("--audio-input", "input tokens that were audio")):
        price.add_argument(flag, type=_token_count, default=0, metavar="N", help=f"{what} (default 0)")
    price.add_argument("--config", help="use the price sources of this config's price processor")
    price.add_argument("--processor", help="which price processor of --config (default: the first)")
    price.add_argument("--at", metavar="TIME", help="price in effect at this UTC instant, e.g. 2026-10-03T12:00Z")
    price.add_argument("--source", metavar="ID", help="the exact table version a span's cost.price_source names "
                       "(found among the loaded sources and the price archive)")
    price.add_argument("--history", metavar="DIR", help="the price archive directory (price.history.directory)")
    price.add_argument("--explain-span", metavar="FILE", help="a span's attributes as JSON (flat, or an OTLP/JSON "
                       "span; - for stdin): show the arithmetic behind its cost.usd")
    price.set_defaults(func=cmd_price)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
