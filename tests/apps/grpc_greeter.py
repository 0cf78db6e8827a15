"""A gRPC server (grpcio, no generated code), so callers can tell which instance served:

- /tulle.test.Greeter/Hello (unary): answers this instance's name; with FAIL_EVERY=N in the
  environment, every N-th call fails with UNAVAILABLE (a flaky instance).
- /tulle.test.Greeter/Count (server streaming): the request is "COUNT SECONDS"; it sends COUNT
  messages spread over SECONDS.

    python3 grpc_greeter.py PORT NAME
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Iterator
from concurrent import futures

import grpc


def main(port: int, name: str) -> None:
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

    handler = grpc.method_handlers_generic_handler("tulle.test.Greeter", {
        "Hello": grpc.unary_unary_rpc_method_handler(hello),
        "Count": grpc.unary_stream_rpc_method_handler(count)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[handler])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
