"""Telemetry from the other replicas: each agent reports to its own replica, so a replica that
answers `tulle stat`, `routes`, `edges` or `diagnose` asks the others for what they received
and adds it to its own (asked when the question comes, never polled).

Each replica answers `GET /v1/replicas/telemetry/raw` (on its identity port, to another
replica's certificate: controlplane.peerchannel) with its own reports only: the counters of a
window, the gauges as last seen, report ages, who each reporting sidecar is and, for diagnose,
the slots of its timeline by age. A replica that does not answer in time is named in the
answer (``replicasMissing``): what it holds is missing, and the figures say so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tulle.controlplane.peerchannel import PeerChannel
from tulle.telemetry.query import NodeInfo
from tulle.telemetry.schema import SeriesKey
from tulle.telemetry.windows import Sample, Window, add_into

PEER_TIMEOUT_S = 1.5
MAX_PEER_ANSWER = 64 << 20


@dataclass(frozen=True)
class PeerTelemetry:
    """What one replica received from its own agents."""

    counters: Sample
    gauges: Sample
    ages: Mapping[str, float]
    nodes: Mapping[str, NodeInfo]
    slots: tuple[tuple[float, float, Sample], ...] = ()  # (seconds ago, length, counters)


@dataclass
class PeerAnswers:
    answered: dict[str, PeerTelemetry] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # replica -> why


def encode_sample(sample: Mapping[tuple[str, SeriesKey], Mapping[str, int]]) -> list[Any]:
    return [[node, key.to_wire(), dict(values)] for (node, key), values in sample.items()]


def decode_sample(rows: Iterable[Any]) -> Sample:
    return {(str(node), SeriesKey.from_wire(key)): {str(k): int(v) for k, v in values.items()}
            for node, key, values in rows}


def encode(window: Window, nodes: Mapping[str, NodeInfo],
           slots: Iterable[tuple[float, float, Sample]]) -> dict[str, Any]:
    return {"counters": encode_sample(window.counters),
            "gauges": encode_sample(window.gauges),
            "ages": dict(window.last_report_age),
            "nodes": {n: [i.name, i.namespace, i.service, i.identity] for n, i in nodes.items()},
            "slots": [[ago, length, encode_sample(sample)] for ago, length, sample in slots]}


def decode(data: Mapping[str, Any]) -> PeerTelemetry:
    return PeerTelemetry(
        decode_sample(data.get("counters", ())), decode_sample(data.get("gauges", ())),
        {str(n): float(a) for n, a in data.get("ages", {}).items()},
        {str(n): NodeInfo(*map(str, i)) for n, i in data.get("nodes", {}).items()},
        tuple((float(ago), float(length), decode_sample(rows))
              for ago, length, rows in data.get("slots", ())))


def merge_slots(local: Iterable[tuple[float, float, Sample]], peers: Iterable[PeerTelemetry],
                slot_s: float) -> list[tuple[float, float, Sample]]:
    """Timelines by age: a peer's slot joins the local slot that started closest to it (the
    replicas' slots are not aligned; off by less than a slot)."""
    merged: dict[int, tuple[float, float, Sample]] = {}
    for ago, length, sample in local:
        merged[round(ago / slot_s)] = (ago, length, {k: dict(v) for k, v in sample.items()})
    for peer in peers:
        for ago, length, sample in peer.slots:
            _, _, target = merged.setdefault(round(ago / slot_s), (ago, length, {}))
            for key, values in sample.items():
                add_into(target.setdefault(key, {}), values)
    return [merged[i] for i in sorted(merged, reverse=True)]  # oldest (largest age) first


def merge(local: Window, peers: Iterable[PeerTelemetry]) -> Window:
    """The local window plus every peer's: counters add up (a sidecar that moved between
    replicas within the window reported part to each); of two gauges, the fresher counts."""
    counters: Sample = {k: dict(v) for k, v in local.counters.items()}
    gauges: Sample = {k: dict(v) for k, v in local.gauges.items()}
    ages = dict(local.last_report_age)
    for peer in peers:
        for key, values in peer.counters.items():
            add_into(counters.setdefault(key, {}), values)
        for key, values in peer.gauges.items():
            node = key[0]
            if key not in gauges or peer.ages.get(node, 1e9) < ages.get(node, 1e9):
                gauges[key] = dict(values)
        for node, age in peer.ages.items():
            ages[node] = min(age, ages.get(node, age))
    return Window(local.seconds, local.span, counters, gauges, ages)


async def fetch(replicas: Mapping[str, Mapping[str, Any]], channel: PeerChannel,
                seconds: float, timeline_s: float = 0.0) -> PeerAnswers:
    """Ask every other replica (``replicas``: id -> where it listens) at once."""
    answers = PeerAnswers()
    if not replicas:
        return answers
    params = {"window": f"{seconds:g}", **({"timeline": f"{timeline_s:g}"}
                                             if timeline_s else {})}

    async def one(client: aiohttp.ClientSession, replica: str,
                  where: Mapping[str, Any]) -> None:
        url = channel.url(where, "/v1/replicas/telemetry/raw")
        try:
            async with client.get(url, params=params,
                                  server_hostname=channel.server_name()) as response:
                if response.status != 200:
                    answers.missing[replica] = f"HTTP {response.status}"
                    return
                body = await response.content.read(MAX_PEER_ANSWER + 1)
                if len(body) > MAX_PEER_ANSWER:
                    answers.missing[replica] = "answer too large"
                    return
                answers.answered[replica] = decode(json.loads(body))
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            answers.missing[replica] = f"{type(exc).__name__}: {exc}" if str(exc) \
                else type(exc).__name__

    async with channel.session(PEER_TIMEOUT_S) as client:
        await asyncio.gather(*(one(client, r, w) for r, w in replicas.items()))
    return answers
