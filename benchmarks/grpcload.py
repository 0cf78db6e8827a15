"""gRPC load for the data-plane benchmark: a server and an open-loop generator (grpcio, asyncio).

    python -m benchmarks.grpcload serve PORT
    python -m benchmarks.grpcload load PORT unary|stream RATE SECONDS

- ``serve``: ``/bench.Echo/Unary`` answers each call with 1 KB; ``/bench.Echo/Stream`` (a
  bidirectional stream) answers each message it receives with 1 KB.
- ``load``: calls at a constant RATE over one channel (one HTTP/2 connection, as a gRPC client
  keeps), each due at its intended time; ``unary``: one call per request; ``stream``: one
  bidirectional stream, one message per request, each answered in order. Latency is measured
  from the intended send time, so the generator's own lateness is in it (and shown as send
  lag), the same on every path. Prints the summary line and the "latency_ns lag_ns" lines
  ``benchmarks.openloop`` reads from its C generator.

Both run in processes of their own, pinned like the HTTP tools: every path under test pays the
same client and server CPU, so the paths differ only by what sits between them. Python is
slower than the C tools (its event loop wakes late by up to a millisecond): the figures that
matter are those added over the direct path and the ratio of the tulle pair to the Envoy pair.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator

import grpc

UNARY = "/bench.Echo/Unary"
STREAM = "/bench.Echo/Stream"
ANSWER = b"x" * 1024
REQUEST = b"ping"
UNFINISHED_AFTER_S = 5.0


async def serve(port: int) -> None:
    async def unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return ANSWER

    async def stream(requests: AsyncIterator[bytes],
                     context: grpc.aio.ServicerContext[bytes, bytes]) -> AsyncIterator[bytes]:
        async for _ in requests:
            yield ANSWER

    handler = grpc.method_handlers_generic_handler("bench.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.stream_stream_rpc_method_handler(stream)})
    server = grpc.aio.server(handlers=[handler])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


class _Tally:
    def __init__(self) -> None:
        self.latencies: list[int] = []
        self.lags: list[int] = []
        self.errors = 0


async def _unary(channel: grpc.aio.Channel, rate: float, seconds: float) -> tuple[_Tally, int]:
    call = channel.unary_unary(UNARY)
    tally = _Tally()
    loop = asyncio.get_running_loop()

    async def one(due: float, lag: float) -> None:
        try:
            await call(REQUEST, timeout=UNFINISHED_AFTER_S + seconds)
        except grpc.aio.AioRpcError:
            tally.errors += 1
            return
        tally.latencies.append(int((loop.time() - due) * 1e9))
        tally.lags.append(int(lag * 1e9))

    total = int(rate * seconds)
    start = loop.time() + 0.01
    pending = set()
    for index in range(total):
        due = start + index / rate
        if (delay := due - loop.time()) > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(due, loop.time() - due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=UNFINISHED_AFTER_S)
    return tally, total


async def _stream(channel: grpc.aio.Channel, rate: float, seconds: float
                  ) -> tuple[_Tally, int]:
    call = channel.stream_stream(STREAM)()
    tally = _Tally()
    loop = asyncio.get_running_loop()
    sent: list[tuple[float, float]] = []  # (due, lag) per message, in order
    total = int(rate * seconds)

    async def read() -> None:
        for index in range(total):
            answer = await call.read()
            if answer is grpc.aio.EOF:
                return
            due, lag = sent[index]
            tally.latencies.append(int((loop.time() - due) * 1e9))
            tally.lags.append(int(lag * 1e9))

    reader = asyncio.create_task(read())
    start = loop.time() + 0.01
    for index in range(total):
        due = start + index / rate
        if (delay := due - loop.time()) > 0:
            await asyncio.sleep(delay)
        sent.append((due, loop.time() - due))
        await call.write(REQUEST)
    try:
        await asyncio.wait_for(reader, UNFINISHED_AFTER_S)
    except (TimeoutError, grpc.aio.AioRpcError):
        tally.errors += 1
    await call.done_writing()
    call.cancel()
    return tally, total


async def load(port: int, kind: str, rate: float, seconds: float) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 10)
        started = time.monotonic()
        tally, total = await (_unary if kind == "unary" else _stream)(channel, rate, seconds)
        elapsed = time.monotonic() - started
    ok = len(tally.latencies)
    print(f"sent {total} ok {ok} errors {tally.errors} "
          f"unfinished {max(0, total - ok - tally.errors)} elapsed {elapsed:.3f}")
    for latency, lag in zip(tally.latencies, tally.lags, strict=True):
        print(latency, lag)


def main(args: list[str]) -> None:
    if args[0] == "serve":
        asyncio.run(serve(int(args[1])))
    else:
        asyncio.run(load(int(args[1]), args[2], float(args[3]), float(args[4])))


if __name__ == "__main__":
    main(sys.argv[1:])
