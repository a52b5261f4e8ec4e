"""``nws-server``: serve the sketch service over gRPC and REST until SIGTERM / SIGINT.

Every setting of :class:`~nws_server.settings.Settings` is a flag (``--grpc-port``) and an
environment variable (``NWS_GRPC_PORT``); a flag wins over the variable, which wins over the
default. Exit status: 0 after a graceful stop, 2 for invalid settings, 1 if the server cannot
start (a port in use, CUDA requested but absent).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError

from nws_core.errors import NWSError
from nws_server.settings import Settings

log = logging.getLogger("nws_server")


def build_parser() -> argparse.ArgumentParser:
    """One flag per settings field, with the field's description as its help."""
    parser = argparse.ArgumentParser(
        prog="nws-server",
        description="Serve named Nadaraya-Watson sketches over gRPC (and REST for monitoring).",
        epilog="Every flag is also an environment variable: --grpc-port is NWS_GRPC_PORT.",
    )
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = field.default
        help_text = f"{field.description} (env NWS_{name.upper()}; default: {default})"
        kwargs: dict[str, Any] = {"default": None, "help": help_text, "dest": name}
        annotation = field.annotation
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            choices = _literal_choices(annotation)
            if choices:
                kwargs["choices"] = choices
            kwargs["metavar"] = name.upper() if not choices else None
        parser.add_argument(flag, **kwargs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {key: value for key, value in vars(args).items() if value is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            print(f"nws-server: invalid {where}: {error['msg']}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from nws_server.server import serve  # imports torch: only once the flags are known good

    try:
        return serve(settings)
    except (OSError, NWSError) as exc:
        log.error("cannot start: %s", exc)
        return 1


def _literal_choices(annotation: Any) -> list[str] | None:
    if get_origin(annotation) is Literal:
        return [str(v) for v in get_args(annotation)]
    return None


if __name__ == "__main__":
    sys.exit(main())
