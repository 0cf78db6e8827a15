"""A gRPC server (grpcio, no generated code), so callers can tell which instance served:

- /tulle.test.Greeter/Hello (unary): answers this instance's name; with FAIL_EVERY=N in the
  environment, every N-th call fails with UNAVAILABLE (a flaky instance).
- /tulle.test.Greeter/Count (server streaming): the request is "COUNT SECONDS"; it sends COUNT
  messages spread over SECONDS.
- /tulle.test.Greeter/Slow (unary): the request is "SECONDS"; it answers after that long, or
  stops as soon as the call is cancelled (a deadline passed) and prints that it was.
- /tulle.test.Greeter/Trailers (unary): the request is "CODE DETAILS"; it sets trailing
  metadata (served-by: NAME, and a binary one) and ends with that status and details (OK
  answers the instance's name).

    python3 grpc_greeter.py PORT NAME [--health FILE] [--reflection]

--health FILE also serves the standard grpc.health.v1 service (grpcio-health-checking): the
server's overall status ("") is SERVING, or NOT_SERVING while FILE says so (read every 0.1 s).
--reflection serves grpc.reflection.v1alpha (grpcio-reflection), listing every service here.
"""

from __future__ import annotations

import argparse
import itertools
import os
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc

SERVICE = "tulle.test.Greeter"


def _serve_health(server: grpc.Server, control: Path) -> str:
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)

    def follow() -> None:
        while True:
            text = control.read_text().strip() if control.exists() else ""
            status = (health_pb2.HealthCheckResponse.NOT_SERVING if text == "NOT_SERVING"
                      else health_pb2.HealthCheckResponse.SERVING)
            servicer.set("", status)
            time.sleep(0.1)

    threading.Thread(target=follow, daemon=True).start()
    return str(health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)


def main(port: int, name: str, health_file: str | None, reflection: bool) -> None:
    fail_every = int(os.environ.get("FAIL_EVERY", "0"))
    calls = itertools.count(1)

    def hello(request: bytes, context: grpc.ServicerContext) -> bytes:
        if fail_every and next(calls) % fail_every == 0:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{name} is flaky")
        return name.encode()

    def count(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        total, seconds = request.decode().split()
        for index in range(int(total)):
            yield f"{name} {index}".encode()
            time.sleep(float(seconds) / int(total))

    def slow(request: bytes, context: grpc.ServicerContext) -> bytes:
        started = time.monotonic()
        deadline = started + float(request.decode())
        while time.monotonic() < deadline and context.is_active():
            time.sleep(0.02)
        if not context.is_active():
            print(f"{name}: Slow cancelled after {time.monotonic() - started:.1f}s", flush=True)
        return name.encode()

    def trailers(request: bytes, context: grpc.ServicerContext) -> bytes:
        code, _, details = request.decode().partition(" ")
        context.set_trailing_metadata((("served-by", name), ("blob-bin", b"\x00\xff\x01")))
        if code != "OK":
            context.abort(grpc.StatusCode[code], details)
        return name.encode()

    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Hello": grpc.unary_unary_rpc_method_handler(hello),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Trailers": grpc.unary_unary_rpc_method_handler(trailers)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[handler])
    services = [SERVICE]
    if health_file:
        services.append(_serve_health(server, Path(health_file)))
    if reflection:
        from grpc_reflection.v1alpha import reflection as grpc_reflection

        services.append(grpc_reflection.SERVICE_NAME)
        grpc_reflection.enable_server_reflection(services, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("name")
    parser.add_argument("--health", metavar="FILE")
    parser.add_argument("--reflection", action="store_true")
    args = parser.parse_args()
    main(args.port, args.name, args.health, args.reflection)
