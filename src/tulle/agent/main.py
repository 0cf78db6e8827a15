"""The agent: one per workload. It registers the workload, runs and supervises Envoy, runs the
application, reports readiness, and on the way out drains before anything stops.

Start order: register -> Envoy ready (config ACKed, listeners bound) -> application. The
application never starts before its sidecar can carry its outbound calls.

Stop order: report draining (the control plane removes the endpoint and waits until every
proxy has ACKed) -> stop the application -> end the session (deregister) -> stop Envoy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

from tulle import __version__
from tulle.agent import http
from tulle.agent.adminproxy import AdminProxy
from tulle.agent.config import JOIN_TOKEN_ENV, AgentConfig
from tulle.agent.envoy import EnvoyProcess, die_with_parent
from tulle.agent.envoyadmin import EnvoyAdmin
from tulle.agent.envoylog import EnvoyLog
from tulle.agent.identity import (
    Enrolment,
    IdentityKeeper,
    prepare_first_key,
    write_xds_client_secret,
    write_xds_roots,
)
from tulle.agent.readiness import PROBE_KINDS, ProbeKind, Readiness, probe
from tulle.agent.remote import (
    ControlPlaneUrl,
    RemoteChannel,
    Trust,
    check_fingerprint,
    fetch_trust,
    local_address_towards,
    parse_control_plane,
)
from tulle.agent.session import Abroad, ControlPlaneSession
from tulle.agent.telemetry import Telemetry, interval_from_env
from tulle.errors import EnvoyError, UsageError
from tulle.identity.spiffe import control_plane_id, spiffe_id
from tulle.local import free_ports, port_is_free, process_state
from tulle.security import new_token
from tulle.settings import (
    LOOPBACK,
    ControlPlaneEndpoint,
    StatePaths,
    create_private,
    ensure_private_dir,
    read_metrics_token,
    read_token,
    write_private,
)

log = logging.getLogger("tulle.agent")

PROBE_FAST_S = 0.05  # until the application first accepts connections
# A report on demand (`tulle diagnose` asks) must answer before the control plane's deadline
# for it; the last report, when the workload stops, must not hold the stop up for long.
REPORT_NOW_S = 1.2
ENVOY_PROBE_S = 1.0
FINAL_REPORT_S = 2.0
PROBE_SLOW_S = 1.0
ENVOY_RESTART_MAX_S = 5.0


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.paths = StatePaths(Path(config.state_dir))
        self.workdir = self.paths.workload_dir(config.namespace, config.name)
        self._stop = asyncio.Event()
        self._stop_signal: int | None = None
        self._app: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._starting: asyncio.Task[Any] | None = None
        self._identity: IdentityKeeper | None = None
        self._joined: RemoteChannel | None = None  # the control plane on another host
        # This host's control plane listens for other hosts: its replicas there, if it dies.
        self._abroad: Abroad | None = None
        self._session: ControlPlaneSession | None = None
        self._telemetry: Telemetry | None = None
        self._envoy: EnvoyProcess | None = None
        self.envoy_restarts = 0  # Envoys that exited and were restarted (telemetry reports it)
        # How to tell the application is ready; the control plane says (its service's protocol).
        self.probe_kind: ProbeKind = "connect"

    async def run(self) -> int:
        self._starting = asyncio.current_task()
        self._install_signal_handlers()
        try:
            code = await self._run()
        except asyncio.CancelledError:
            if self._stop_signal is None:
                raise
            return 128 + self._stop_signal
        if self.config.ephemeral and code == 0:
            # A one-shot run leaves nothing behind; a failed one keeps its logs and says where.
            shutil.rmtree(self.workdir, ignore_errors=True)
        elif self.config.ephemeral:
            log.warning("exit code %d: logs kept in %s", code, self.workdir)
        return code

    def _check_ports(self) -> None:
        """The ports this workload will listen on besides its own: free, or a clear error."""
        config = self.config
        if config.gateway_port is not None and not port_is_free(config.gateway_port):
            raise UsageError(f"port {config.gateway_port} for the gateway is already in use",
                             hint="stop what listens there, or serve another listener's port")
        for _, local_port in config.upstreams:
            if not port_is_free(local_port):
                raise UsageError(f"local port {local_port} for --upstream is already in use",
                                 hint="choose another port: --upstream SERVICE:PORT")

    async def _run(self) -> int:
        config = self.config
        joined = self._joined = await self._join()
        host, api_port, api_token, identity_host, trust_domain, address = self._locate(joined)
        ensure_private_dir(self.workdir)
        admin = EnvoyAdmin(self.workdir)
        self._check_ports()
        outbound, agent_port, inbound = free_ports(3)
        agent_token = new_token()
        telemetry = Telemetry(admin, (("namespace", config.namespace),
                                      ("workload", config.name), ("service", config.service)),
                              self._report_telemetry, interval_from_env(),
                              restarts=lambda: self.envoy_restarts)
        envoy_log = EnvoyLog(self.workdir / "envoy.log")
        self._telemetry = telemetry
        admin_proxy = AdminProxy(agent_token, admin, metrics=telemetry.metrics,
                                 metrics_token=read_metrics_token(self.paths),
                                 envoy_log=envoy_log, report=self.report_now)
        if joined is None:
            await admin_proxy.start(LOOPBACK, agent_port)
        account = config.service_account or config.service
        identity_dir = self.paths.identity_dir(config.namespace, config.name)
        self._abroad = self._plan_abroad(joined, address, identity_dir, trust_domain)
        session = ControlPlaneSession(host, api_port, api_token, {
            "name": config.name, "namespace": config.namespace, "service": config.service,
            "version": config.version, "labels": config.labels, "address": address,
            "appPort": config.app_port, "inboundPort": inbound if config.app_port else None,
            "outboundPort": outbound, "agentPort": agent_port,
            "upstreams": [{"service": s, "localPort": p} for s, p in config.upstreams],
            "xdsProtocol": config.xds_protocol, "pid": os.getpid(),
            "xdsToken": new_token(), "agentToken": agent_token,
            "serviceAccount": config.service_account, "agentVersion": __version__,
            **({"keyDir": str(identity_dir.absolute())} if joined else {}),
            **({"gateway": {"port": config.gateway_port,
                            "listenAddress": config.gateway_listen_address,
                            "tlsCert": config.gateway_tls_cert,
                            "tlsKey": config.gateway_tls_key}}
               if config.gateway_port is not None else {}),
        }, on_message=self._on_control_message, on_moved=self._on_moved, remote=joined,
            abroad=self._abroad)
        envoy: EnvoyProcess | None = None
        # The key takes a process start to make: begin now, alongside registration.
        prepared = prepare_first_key(
            identity_dir, spiffe_id(trust_domain, config.namespace, account))
        try:
            first = await session.open()
            self._set_probe(first.get("probe"))
            # The certificate first: the proxy's listeners and clusters wait for it.
            enrolment = first["identity"]
            self._identity = IdentityKeeper(session.node_id, identity_dir,
                                            Enrolment(
                spiffe_id=enrolment["spiffeId"], trust_domain=enrolment["trustDomain"],
                trust_bundle=enrolment["trustBundle"], host=identity_host,
                port=int(enrolment["identityPort"]), join_token=enrolment["joinToken"]),
                reenrol=session.join_token)
            await self._identity.obtain(prepared)
            self._keep_xds_client_secret(self._identity)
            # The control plane calls us on our host's address: from another host, or a
            # replica there once our session moved to it.
            if joined is not None or self._abroad is not None:
                await self._serve_remote(admin_proxy, address, agent_port,
                                         control_plane_id(trust_domain))
            bootstrap = self.workdir / "bootstrap.json"
            # The admin interface is ours to place: the control plane need not know where.
            write_private(bootstrap, json.dumps({**first["bootstrap"], "admin": admin.bootstrap()},
                                                indent=1))
            envoy = EnvoyProcess(Path(config.envoy_binary), bootstrap,
                                 envoy_log.path, admin,
                                 concurrency=config.concurrency,
                                 log_level=config.envoy_log_level)
            self._envoy = envoy
            await envoy.start()
            await envoy.wait_ready(config.ready_timeout_s)
            log.info("sidecar of %s ready: outbound %d, inbound %s, admin %s", session.node_id,
                     outbound, inbound if config.app_port else "-", admin.path)
            self._starting = None
            if config.command:
                self._app = await self._start_app(outbound)
            self._session = session
            self._tasks = [asyncio.create_task(self._probe(session, envoy)),
                           asyncio.create_task(telemetry.run()),
                           asyncio.create_task(self._supervise(envoy, session)),
                           asyncio.create_task(self._identity.keep()),
                           asyncio.create_task(envoy_log.keep_bounded())]
            if self._app is not None:
                self._tasks.append(asyncio.create_task(self._watch_app(self._app)))
            await self._stop.wait()
        finally:
            for task in self._tasks:
                task.cancel()
            await self._shutdown(session, envoy)
            await admin_proxy.close()
        return self._exit_code()

    # -- pieces ------------------------------------------------------------------------------

    def _keep_xds_client_secret(self, keeper: IdentityKeeper) -> None:
        """The certificate the sidecar presents to xDS over TLS, the current one always, and
        the roots it checks the control plane against (rewritten on a new bundle too)."""
        def write() -> None:
            write_xds_client_secret(self.workdir, keeper.cert_file, keeper.key_file)
            write_xds_roots(self.workdir, keeper.bundle)

        write()
        self._trust_bundle(keeper.bundle)  # and the agent's own channels to replicas
        keeper.on_renewed.append(write)

    async def _serve_remote(self, admin_proxy: AdminProxy, address: str, port: int,
                            peer_uri: str) -> None:
        """The agent's port on this host's address, over TLS with the workload certificate,
        for the control plane's certificate only (reloaded on each renewal)."""
        keeper = self._identity
        assert keeper is not None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED

        def load() -> None:
            context.load_verify_locations(cadata=keeper.bundle)
            context.load_cert_chain(keeper.cert_file, keeper.key_file)

        load()
        keeper.on_renewed.append(load)
        await admin_proxy.start(address, port, tls=context,
                                peer_uri=peer_uri)

    def _locate(self, joined: RemoteChannel | None) -> tuple[str, int, str, str, str, str]:
        """Where the control plane is: host and port to register at, the API token (this
        host's only), the identity port's host, the trust domain, and our own address."""
        if joined is None:
            endpoint = ControlPlaneEndpoint.load(self.paths)
            # With a control plane that listens for other hosts, this host's workloads are
            # reached on that address too (their inbound listeners bind it).
            return (endpoint.host, endpoint.api_port, read_token(self.paths),
                    endpoint.agent_host, endpoint.trust_domain,
                    endpoint.agent_host if endpoint.xds_tls else LOOPBACK)
        return (joined.where.host, joined.where.port, "", joined.where.host,
                joined.trust.trust_domain,
                self.config.address or local_address_towards(joined.where))

    async def _join(self) -> RemoteChannel | None:
        """With --control-plane: the channel to a control plane on another host, once its CA
        matched the pinned fingerprint. The join token leaves the environment at once, so
        the workload's command never inherits it."""
        config = self.config
        token = os.environ.pop(JOIN_TOKEN_ENV, "")
        if not config.control_plane:
            return None
        where = parse_control_plane(config.control_plane)
        trust = await fetch_trust(where, check_fingerprint(config.ca_fingerprint))

        return RemoteChannel(where, trust, token, self._certificate_files)

    def _plan_abroad(self, joined: RemoteChannel | None, address: str, identity_dir: Path,
                     trust_domain: str) -> Abroad | None:
        """For this host's agent of a control plane that listens for other hosts: how to
        reach its replicas there (the roots come with the first certificate)."""
        if joined is not None or address == LOOPBACK:
            return None
        return Abroad(address, str(identity_dir.absolute()), RemoteChannel(
            ControlPlaneUrl(address, 0), Trust("", trust_domain), "", self._certificate_files))

    def _certificate_files(self) -> tuple[Path, Path] | None:
        """The workload's current chain and key, once it has one."""
        keeper = self._identity
        return (keeper.cert_file, keeper.key_file) if keeper and keeper.generation else None

    def _trust_bundle(self, bundle: str) -> None:
        """The roots that channels to replicas on other hosts check them against."""
        for channel in (self._joined, self._abroad.channel if self._abroad else None):
            if channel is not None:
                channel.trust = dataclasses.replace(channel.trust, bundle_pem=bundle)

    async def _report_telemetry(self, payload: dict[str, Any]) -> bool:
        return self._session is not None and await self._session.send_telemetry(payload)

    async def report_now(self) -> dict[str, Any]:
        """Report telemetry now, and say how the processes of this workload are: what
        `tulle diagnose` asks every agent before it judges (fresh evidence, and frozen
        processes told from dead ones). Answers within ``REPORT_NOW_S`` and a bit."""
        envoy = self._envoy
        envoy_pid = envoy.process.pid if envoy is not None and envoy.process is not None \
            else None
        answers, (reported, error) = await asyncio.gather(
            self._envoy_answers(), self._report_within(REPORT_NOW_S))
        app = self._app
        return {
            "reported": reported, "error": error,
            "telemetry": "off" if self._telemetry is not None
            and self._telemetry.interval_s is None else "on",
            "agent": _process(os.getpid()),
            "envoy": {**_process(envoy_pid), "answers": answers} if envoy_pid else None,
            "app": _process(app.pid) if app is not None else None,
        }

    async def _report_within(self, seconds: float) -> tuple[bool, str | None]:
        telemetry = self._telemetry
        if telemetry is None or self._session is None:
            return False, "the sidecar is still starting"
        if telemetry.interval_s is None:
            return False, "telemetry is off on this sidecar (TULLE_TELEMETRY_INTERVAL)"
        try:
            sent = await asyncio.wait_for(telemetry.report(), seconds)
        except TimeoutError:
            return False, f"Envoy's stats did not arrive within {seconds:g}s"
        except (OSError, http.HttpError, ValueError) as exc:
            return False, f"cannot read Envoy's stats: {exc}"
        return sent, None if sent else "the control plane did not take the report"

    async def _envoy_answers(self) -> bool:
        envoy = self._envoy
        if envoy is None:
            return False
        try:
            response = await envoy.admin.request("GET", "/ready", timeout=ENVOY_PROBE_S)
        except (OSError, http.HttpError, TimeoutError):
            return False
        return response.status in (200, 503)  # 503: answering, only not (yet) LIVE

    def _on_moved(self, replica: dict[str, Any]) -> None:
        """Our control-plane replica is gone and the session moved to another: renewals and
        reports follow it (Envoy's ADS stream moves on its own, by its cluster's health)."""
        if self._identity is not None:
            self._identity.move_to(str(replica.get("agentHost") or replica["host"]),
                                   int(replica["identityPort"]))

    def _on_control_message(self, message: dict[str, Any]) -> None:
        """From the control plane, over the session: a new trust bundle, "renew now", or the
        readiness probe its service's protocol calls for."""
        if "probe" in message:
            self._set_probe(message["probe"])
        if self._identity is None:
            return
        if "bundle" in message:
            bundle = str(message["bundle"])
            self._identity.renew_soon(bundle=bundle)
            # A root rotation's first stage: the new roots are trusted on every channel to
            # the control plane before its certificate moves to them.
            write_xds_roots(self.workdir, bundle)
            self._trust_bundle(bundle)
        if message.get("renew"):
            self._identity.renew_soon()

    def _set_probe(self, kind: object) -> None:
        if kind in PROBE_KINDS and kind != self.probe_kind:
            log.info("readiness probe: %s", kind)
            self.probe_kind = kind

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum
        self._stop.set()
        if self._starting is not None:
            self._starting.cancel()  # a signal during start-up: give up starting

    async def _start_app(self, outbound_port: int) -> asyncio.subprocess.Process:
        config = self.config
        proxy = f"http://{LOOPBACK}:{outbound_port}"
        env = dict(os.environ)
        no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "localhost,127.0.0.1,::1"]))
        env.update({
            "HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": no_proxy, "no_proxy": no_proxy,
            "TULLE_WORKLOAD": config.name, "TULLE_SERVICE": config.service,
            "TULLE_NAMESPACE": config.namespace, "TULLE_OUTBOUND_PORT": str(outbound_port),
        })
        if config.app_port:
            env["PORT"] = str(config.app_port)
        # At a terminal, the application shares our process group so it gets the user's Ctrl-C
        # and can read the terminal. Otherwise (supervisors, scripts) it gets its own group and
        # we forward the signal only after draining.
        interactive = sys.stdin.isatty()
        try:
            return await asyncio.create_subprocess_exec(
                *config.command, env=env, preexec_fn=die_with_parent(signal.SIGTERM),
                process_group=None if interactive else 0)
        except OSError as exc:
            raise UsageError(f"cannot start {config.command[0]!r}: {exc.strerror}",
                             hint="check the command after `--`") from exc

    async def _watch_app(self, app: asyncio.subprocess.Process) -> None:
        await app.wait()
        log.info("application exited with %s", app.returncode)
        self._stop.set()

    async def _probe(self, session: ControlPlaneSession, envoy: EnvoyProcess) -> None:
        """Report ready while Envoy runs and the application is ready (``readiness``); when it
        is not, with the reason."""
        port = self.config.app_port
        ever_ready = False
        while True:
            if not envoy.ready:
                found = Readiness(False, "its sidecar's Envoy is not ready")
            elif port is None:
                found = Readiness(True)
            else:
                found = await probe(self.probe_kind, port)
            ever_ready = ever_ready or found.ready
            wanted = "ready" if found.ready else ("not-ready" if ever_ready else "starting")
            if (wanted, found.reason) != (session.state, session.reason):
                if found.reason:
                    log.info("not ready: %s", found.reason)
                await session.report(wanted, found.reason)
            await asyncio.sleep(PROBE_SLOW_S if ever_ready else PROBE_FAST_S)

    async def _supervise(self, envoy: EnvoyProcess, session: ControlPlaneSession) -> None:
        """Restart Envoy if it dies; it reloads its config from the control plane. Meanwhile
        the workload is not ready, so other proxies stop sending to a dead listener."""
        delay = 0.1
        while True:
            assert envoy.process is not None
            code = await envoy.process.wait()
            envoy.ready = False
            self.envoy_restarts += 1
            log.error("Envoy exited unexpectedly (code %s); restarting:\n%s", code,
                      envoy.log_tail())
            if session.state == "ready":
                await session.report("not-ready", "its sidecar's Envoy exited; restarting it")
            await asyncio.sleep(delay)
            delay = min(delay * 2, ENVOY_RESTART_MAX_S)
            await envoy.start()
            try:
                await envoy.wait_ready(self.config.ready_timeout_s)
                delay = 0.1
            except EnvoyError as exc:
                log.error("the restarted Envoy did not become ready: %s", exc.message)

    async def _shutdown(self, session: ControlPlaneSession, envoy: EnvoyProcess | None) -> None:
        if self.config.app_port and session.state in ("ready", "not-ready", "starting"):
            result = await session.report("draining")
            if result is not None and not result.get("synced", False):
                log.warning("not every proxy confirmed the removal in time")
        app = self._app
        if app is not None and app.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                app.send_signal(self._stop_signal or signal.SIGTERM)
            try:
                await asyncio.wait_for(app.wait(), self.config.stop_timeout_s)
            except TimeoutError:
                log.warning("the application did not stop in %ss; killing it",
                            self.config.stop_timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    app.kill()
                await app.wait()
        telemetry_on = self._telemetry is not None and self._telemetry.interval_s is not None
        if self._session is not None and telemetry_on:
            # The last report, before the session ends (the control plane takes reports only
            # from registered workloads) and before Envoy goes with its counters: a one-shot
            # client's calls would otherwise never be counted.
            reported, error = await self._report_within(FINAL_REPORT_S)
            if not reported:
                log.warning("the last telemetry report did not arrive: %s", error)
        await session.close()
        if envoy is not None:
            await envoy.stop()
        if self._identity is not None:
            self._identity.forget()  # nothing may use the keys any more

    def _exit_code(self) -> int:
        app = self._app
        if app is not None and app.returncode is not None:
            code = app.returncode
            return 128 - code if code < 0 else code
        if self._stop_signal is not None:
            return 128 + self._stop_signal
        return 0


def _process(pid: int | None) -> dict[str, Any]:
    """A process as diagnose reads it: pid, state letter (T: stopped), command line."""
    state, command = process_state(pid or 0)
    return {"pid": pid, "state": state, "command": command[:200]}


def configure_logging(workdir: Path) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    ensure_private_dir(workdir)
    create_private(workdir / "agent.log")  # the handler keeps an existing file's mode
    file_handler = logging.FileHandler(workdir / "agent.log")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(file_handler)
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("tulle agent: %(message)s"))
    root.addHandler(console)


def run(config: AgentConfig) -> Any:
    configure_logging(StatePaths(Path(config.state_dir)).workload_dir(config.namespace,
                                                                      config.name))
    return asyncio.run(Agent(config).run())
