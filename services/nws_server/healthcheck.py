"""``python -m nws_server.healthcheck [HOST:PORT]``: exit 0 if the server's gRPC health is SERVING.

The container health check of the deployment (docker-compose.yml): it asks the standard
``grpc.health.v1`` service, which stays open without the bearer token, for the sketch service's
status. Exit status: 0 SERVING, 1 anything else (NOT_SERVING while stopping, no answer in time,
connection refused). Needs grpcio and grpcio-health-checking only, like ``grpc_health_probe``.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICE = "nws.v1.SketchService"


def check(target: str, timeout: float = 3.0, service: str = SERVICE) -> str:
    """The health status name of ``service`` at ``target`` (e.g. 'SERVING'), or 'UNREACHABLE'."""
    with grpc.insecure_channel(target) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            return f"UNREACHABLE ({exc.code().name})"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nws_server.healthcheck",
        description="Exit 0 if the sketch server's gRPC health service answers SERVING.",
    )
    parser.add_argument("target", nargs="?", default="127.0.0.1:50051", help="HOST:PORT")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait (default 3)")
    args = parser.parse_args(argv)
    status = check(args.target, args.timeout)
    print(f"{args.target}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
