"""The tests' own ports (tests/support/ports.py): outside the kernel's ephemeral range, never
shared between processes holding different blocks, never handed out twice."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.ports import PortPool, blocks, ephemeral_range


def test_ephemeral_range_is_read_from_the_kernel_file(tmp_path: Path) -> None:
    source = tmp_path / "ip_local_port_range"
    source.write_text("40000\t50000\n")
    assert ephemeral_range(source) == (40000, 50000)
    assert ephemeral_range(tmp_path / "missing") == (32768, 60999)


def test_blocks_stay_outside_the_ephemeral_range() -> None:
    found = blocks((32768, 60999), lowest=20000, size=250)
    assert found[0] == range(20000, 20250)
    assert all(b.start >= 20000 and (b.stop <= 32768 or b.start > 60999) for b in found)
    ports = [p for b in found for p in b]
    assert len(ports) == len(set(ports)) and max(ports) <= 65535
    # No room below the range: the ports above it.
    assert all(b.start > 64000 for b in blocks((1024, 64000), lowest=20000, size=250))


def test_pools_never_share_a_block_nor_repeat_a_port(tmp_path: Path) -> None:
    candidates = blocks((32768, 60999), lowest=24000, size=20)[:3]
    first = PortPool(list(candidates), tmp_path)
    second = PortPool(list(candidates), tmp_path)  # as another process would
    mine = [first.take() for _ in range(25)]  # more than a block: it claims another
    theirs = [second.take() for _ in range(5)]
    assert len(set(mine)) == 25
    assert not set(mine) & set(theirs)
    assert all(p in candidates[2] for p in theirs)


def test_a_port_in_use_is_skipped(tmp_path: Path) -> None:
    block = blocks((32768, 60999), lowest=25000, size=10)[0]
    taken = PortPool([block], tmp_path / "a").take()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        # Another process's pool (its own lock directory here) over the same block.
        assert PortPool([block], tmp_path / "b").take() != taken
