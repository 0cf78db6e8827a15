"""A gRPC server (grpcio, no generated code): the unary method /tulle.test.Greeter/Hello
answers with this instance's name, so a caller can count which instance served each call.

    python3 grpc_greeter.py PORT NAME
"""

from __future__ import annotations

import sys
from concurrent import futures

import grpc

METHOD = "/tulle.test.Greeter/Hello"


def main(port: int, name: str) -> None:
    def hello(request: bytes, context: grpc.ServicerContext) -> bytes:
        return name.encode()

    handler = grpc.method_handlers_generic_handler("tulle.test.Greeter", {
        "Hello": grpc.unary_unary_rpc_method_handler(hello)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[handler])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
