"""The checks of `tulle check`, as a table. Order matters: a check runs after the checks it
``needs``. Ids are stable (scripts and docs anchors use them); never reuse a retired id.

Every hint's docs page is ``docs/checks/<group>.md#<id>``.
"""

from __future__ import annotations

from tulle.checks import controlplane as cp
from tulle.checks import dataplane as dp
from tulle.checks.client import CheckApi
from tulle.checks.runner import Check

GROUP_TITLES = {
    "control-plane": "control plane",
    "store": "store",
    "replicas": "replicas and etcd",
    "hosts": "hosts",
    "identity": "CA and identity",
    "proxies": "proxies",
    "telemetry": "telemetry",
    "data-plane": "data plane traffic",
}
API = ("cp-authenticated",)  # every check that asks the API needs this one

CONTROL_PLANE_CHECKS: tuple[Check[CheckApi], ...] = (
    Check("cp-running", "control-plane", "the control plane is running",
          "start it with `tulle up`; its log is controlplane.log in the state directory",
          cp.running, timeout=3.0),
    Check("cp-reachable", "control-plane", "the control plane API answers",
          "start it with `tulle up`, or check --state-dir / TULLE_HOME names the right state "
          "directory", cp.reachable, timeout=6.0),
    Check("cp-authenticated", "control-plane", "the API accepts the CLI's token",
          "the token is STATE_DIR/api-token; restart with `tulle down && tulle up` if it was "
          "replaced", cp.authenticated, timeout=6.0, needs=("cp-reachable",)),
    Check("cp-version", "control-plane", "the control plane's version matches the CLI",
          "run the same tulle version for the CLI and the control plane (`tulle version`)",
          cp.version, fatal=False, timeout=6.0, needs=API),
    Check("store-integrity", "store", "the store opens and passes its integrity check",
          "stop the control plane and restore store.db from a backup", cp.store_integrity,
          timeout=10.0, needs=API),
    Check("store-readable", "store", "the store's revision and history are readable",
          "check the permissions and free space of the state directory", cp.store_readable,
          timeout=10.0, needs=API),
    Check("replicas-answering", "replicas", "every replica of the shared store answers",
          "start the replica that does not answer, or check the network between the hosts; "
          "its agents fail over on their own", cp.replicas_answering, timeout=10.0,
          needs=API),
    Check("replicas-clock", "replicas", "the replicas' clocks agree within 1 s",
          "run NTP (chrony, systemd-timesyncd) on every host", cp.replicas_clock,
          fatal=False, timeout=10.0, needs=API),
    Check("etcd-quorum", "replicas", "etcd is healthy, with quorum",
          "restart the etcd members that are down (`etcdctl endpoint health --cluster`); "
          "without quorum no change can be applied", cp.etcd_quorum, timeout=10.0,
          needs=API),
    Check("hosts-reachable", "hosts", "the control plane reaches every workload's agent",
          "start the workload again, or open the network between the hosts (the agent's "
          "port, from the control plane)", cp.hosts_reachable, timeout=10.0, needs=API),
    Check("hosts-clock", "hosts", "every host's clock agrees with the control plane's within 1 s",
          "run NTP (chrony, systemd-timesyncd) on every host", cp.hosts_clock, timeout=10.0,
          needs=API),
    Check("identity-anchors", "identity", "the trust anchors are valid now",
          "rotate the root: `tulle certs rotate root`", cp.anchors_valid, needs=API),
    Check("identity-issuer", "identity", "the issuer is valid now",
          "rotate the issuer: `tulle certs rotate issuer`", cp.issuer_valid, needs=API),
    Check("identity-algorithms", "identity", "the CA uses supported algorithms",
          "import a PKI with ECDSA P-256/P-384 or RSA >= 2048 keys: `tulle certs import`",
          cp.algorithms, needs=API),
    Check("identity-issuer-signed", "identity", "the issuer is signed by a trust anchor",
          "import an issuer signed by the root: `tulle certs import`, or "
          "`tulle certs rotate issuer`", cp.issuer_signed, needs=API),
    Check("identity-expiry", "identity", "the anchors and issuer have 60 days or more left",
          "rotate before they expire: `tulle certs rotate issuer` (or `root`)", cp.expiry,
          fatal=False, needs=API),
    Check("identity-join-tokens", "identity",
          "no join token expired unused in the last day, and none is about to",
          "make a new token for the host that did not join: `tulle token create --service "
          "NAME` (`tulle token list` shows them all)", cp.join_tokens, fatal=False,
          needs=API),
)

PROXY_CHECKS: tuple[Check[CheckApi], ...] = (
    Check("proxies-connected", "proxies", "every workload's proxy is connected",
          "see the workload's agent.log and envoy.log in STATE_DIR/workloads/NAME.NS/",
          dp.connected, retry_deadline=10.0, needs=API),
    Check("proxies-synced", "proxies", "every proxy ACKed its config (not NACKED or STALE)",
          "`tulle proxy-status PROXY` shows Envoy's message for a NACK",
          dp.synced, retry_deadline=15.0, needs=API),
    Check("proxies-streams", "proxies",
          "no other client presented a proxy's xDS credential",
          "restart the workload to replace its credential, after finding who read its "
          "bootstrap: `tulle diagnose` (TUL1066)", dp.streams, needs=API),
    Check("proxies-certificates", "proxies",
          "every proxy's certificate is valid and chains to the trust bundle",
          "the agent renews on its own; see its agent.log, or restart the workload",
          dp.certificates, timeout=30.0, needs=API),
    Check("proxies-versions", "proxies", "proxies run the Envoy version the control plane "
          "expects", "restart workloads started with another Envoy (--envoy-binary)",
          dp.versions, fatal=False, timeout=30.0, needs=API),
    Check("proxies-agent-versions", "proxies", "agents run the control plane's tulle version",
          "restart workloads whose agent came from another tulle installation",
          dp.agent_versions, fatal=False, needs=API),
    Check("telemetry-reports", "telemetry", "every connected proxy reports telemetry",
          "see the workload's agent.log: its reports go to the control plane every 5s",
          dp.reports_flowing, retry_deadline=12.0, needs=API),
    Check("traffic-endpoints", "data-plane", "every called service has healthy endpoints",
          "start an instance of the service, or find why its instances are not ready: "
          "`tulle diagnose SERVICE`", dp.endpoints, needs=API),
    Check("traffic-edges", "data-plane", "no edge has a high failure rate (last minute)",
          "`tulle diagnose SERVICE` explains the cause", dp.edges, needs=API),
    Check("traffic-sidecars", "data-plane",
          "every sidecar is LIVE, serves on every listener and was not restarted",
          "a sidecar told to drain or quit through its admin, or crashing: `tulle diagnose`",
          dp.sidecars_serving, needs=API),
    Check("traffic-proxy-resources", "data-plane",
          "proxy memory and stats counts are normal",
          "a proxy with far more memory or stats than the others: `tulle diagnose SERVICE`",
          dp.proxy_resources, fatal=False, needs=API),
)


def checks(proxy: bool) -> tuple[Check[CheckApi], ...]:
    return CONTROL_PLANE_CHECKS + (PROXY_CHECKS if proxy else ())
