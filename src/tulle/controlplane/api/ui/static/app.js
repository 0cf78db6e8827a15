// tulle's dashboard: reads the API's own JSON (the session cookie opens a few read-only
// routes), draws the page, and draws it again on each server-sent "update" event. Every
// element is built with createElement and text nodes: nothing from the mesh is parsed as HTML.
"use strict";

const main = document.getElementById("page");
const content = document.getElementById("content");
const PAGE = main.dataset.page;
const ARGUMENT = main.dataset.argument;
const WINDOW = 900; // the 15 minutes tulle keeps
const EDGE_WINDOW = 30; // the topology's colours: the last 30 s
const FAILING = 0.95; // success rate under which an edge or a service is red
window.tulleUpdates = 0;

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v; else el.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

async function api(path) {
  const response = await fetch(path, {credentials: "same-origin"});
  if (response.status === 401) { window.location = "/ui/login"; throw new Error("logged out"); }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

const pct = (v) => (v === null || v === undefined) ? "-" : (100 * v).toFixed(2) + "%";
const ms = (v) => (v === null || v === undefined) ? "-" : v + " ms";
const when = (t) => t ? new Date(t * 1000).toLocaleTimeString() : "-";
const failing = (row) => row.successRate !== null && row.successRate !== undefined &&
  row.successRate < FAILING;

function table(headers, rows, rowAttrs) {
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((cells, i) => h("tr", rowAttrs ? rowAttrs(i) : {},
      cells.map((c) => (c instanceof Node && c.tagName === "TD") ? c : h("td", {}, c))))));
}

function cell(field, value) { return h("td", {"data-field": field}, value); }

function sparkline(series) {
  if (!series) return h("span", {class: "muted"}, "-");
  const width = 120, height = 24, top = Math.max(1, ...series.rps);
  const x = (i) => (i * width / (series.rps.length - 1)).toFixed(1);
  const y = (v) => (height - 1 - v / top * (height - 2)).toFixed(1);
  const line = (values) => values.map((v, i) => `${x(i)},${y(v)}`).join(" ");
  return svg("svg", {class: "spark", width, height, viewBox: `0 0 ${width} ${height}`},
    svg("polyline", {points: line(series.rps), class: "rps"}),
    svg("polyline", {points: line(series.failedPerSecond), class: "failed"}));
}

function missing(data) {
  return (data.replicasMissing || []).map((m) => h("p", {class: "warning"},
    `replica ${m.replica} did not answer (${m.why}): its agents' figures are missing`));
}

// -- pages ---------------------------------------------------------------------------------

async function topology() {
  const data = await api(`/v1/telemetry/edges?window=${EDGE_WINDOW}`);
  const name = (end) => end.service ? `${end.service}.${end.namespace}` :
    end.host ? end.host : "outside the mesh";
  const edges = data.edges.map((e) => ({from: name(e.source), to: name(e.destination), e}));
  const nodes = [...new Set(edges.flatMap((e) => [e.from, e.to]))].sort();
  if (!nodes.length) {
    return [h("p", {class: "muted"}, `no calls in the last ${EDGE_WINDOW}s`)];
  }
  const size = 520, radius = nodes.length > 1 ? 190 : 0, where = {};
  nodes.forEach((n, i) => {
    const angle = 2 * Math.PI * i / nodes.length - Math.PI / 2;
    where[n] = [size / 2 + radius * Math.cos(angle), size / 2 + radius * Math.sin(angle)];
  });
  const drawn = svg("svg", {id: "graph", width: size, height: size,
                            viewBox: `0 0 ${size} ${size}`},
    svg("defs", {}, svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 30, refY: 5,
      markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse"},
      svg("path", {d: "M 0 0 L 10 5 L 0 10 z"}))),
    edges.map(({from, to, e}) => {
      const [x1, y1] = where[from], [x2, y2] = where[to];
      const state = failing(e) ? "failing" : "ok";
      return svg("g", {class: `edge ${state}`, "data-from": from, "data-to": to},
        svg("line", {x1, y1, x2, y2, "marker-end": "url(#arrow)"}),
        svg("text", {x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, "text-anchor": "middle"},
          `${e.rps} rps · ${pct(e.successRate)} · ${e.mtls ? "mTLS" : "plaintext"}`));
    }),
    nodes.map((n) => svg("g", {class: "node", "data-node": n},
      svg("circle", {cx: where[n][0], cy: where[n][1], r: 22}),
      svg("text", {x: where[n][0], y: where[n][1] + 38, "text-anchor": "middle"}, n))));
  const rows = edges.map(({from, to, e}) => [cell("from", from), cell("to", to),
    cell("rps", e.rps), cell("requests", e.requests), cell("success", pct(e.successRate)),
    cell("mtls", e.mtls ? "mTLS" : "plaintext"), cell("p99", ms(e.latencyMs.p99)),
    cell("errors", Object.entries(e.errors).map(([k, v]) => `${k} ${v}`).join(", ") || "-")]);
  return [...missing(data), drawn,
    h("p", {class: "muted"}, `edges over the last ${EDGE_WINDOW}s; red under ` +
      `${FAILING * 100}% success`),
    table(["FROM", "TO", "RPS", "REQUESTS", "SUCCESS", "MTLS", "P99", "ERRORS"], rows,
      (i) => ({class: `edge-row ${failing(edges[i].e) ? "failing" : "ok"}`,
               "data-from": edges[i].from, "data-to": edges[i].to}))];
}

function goldenRows(rows, sparks, key, link) {
  return {
    cells: rows.map((r) => [cell("namespace", r.namespace), cell("name", link(r)),
      cell("requests", r.requests), cell("rps", r.rps), cell("success", pct(r.successRate)),
      cell("p50", ms(r.latencyMs.p50)), cell("p99", ms(r.latencyMs.p99)),
      h("td", {"data-field": "trend"}, sparkline(sparks[key(r)]))]),
    attrs: (i) => ({"data-key": key(rows[i]), class: failing(rows[i]) ? "failing" : "ok"}),
  };
}

const GOLDEN = ["NAMESPACE", "NAME", "REQUESTS", "RPS", "SUCCESS", "P50", "P99",
                "LAST 15 MIN"];

async function services() {
  const [data, sparks] = await Promise.all([api(`/v1/telemetry/services?window=${WINDOW}`),
                                            api(`/v1/ui/sparklines?window=${WINDOW}`)]);
  const {cells, attrs} = goldenRows(data.services, sparks.services,
    (r) => `${r.name}.${r.namespace}`,
    (r) => h("a", {href: `/ui/service/${r.namespace}/${r.name}`}, r.name));
  return [...missing(data), table(GOLDEN, cells, attrs)];
}

async function workloads() {
  const [data, sparks] = await Promise.all([api(`/v1/telemetry/workloads?window=${WINDOW}`),
                                            api(`/v1/ui/sparklines?window=${WINDOW}`)]);
  const {cells, attrs} = goldenRows(data.workloads, sparks.workloads,
    (r) => `${r.name}.${r.namespace}`, (r) => `${r.name} (${r.service})`);
  return [...missing(data), table(GOLDEN, cells, attrs)];
}

function routeTable(data, sparks) {
  const rows = data.routes, host = `${data.service}.${data.namespace}`;
  const key = (r) => `${host} ${r.route}#${r.rule}`;
  return table(["ROUTE", "RULE", "MATCHES", "REQUESTS", "RPS", "SUCCESS", "P99",
                "LAST 15 MIN"],
    rows.map((r) => [cell("route", r.route), cell("rule", r.rule || "-"),
      cell("matches", r.matches), cell("requests", r.requests), cell("rps", r.rps),
      cell("success", pct(r.successRate)), cell("p99", ms(r.latencyMs.p99)),
      h("td", {"data-field": "trend"}, sparkline((sparks || {})[key(r)]))]),
    (i) => ({class: failing(rows[i]) ? "failing" : "ok", "data-key": key(rows[i])}));
}

async function routes() {
  const [listed, sparks] = await Promise.all([api(`/v1/telemetry/services?window=${WINDOW}`),
                                              api(`/v1/ui/sparklines?window=${WINDOW}`)]);
  const out = [];
  for (const s of listed.services) {
    const data = await api(`/v1/telemetry/routes?window=${WINDOW}&namespace=${
      encodeURIComponent(s.namespace)}&name=${encodeURIComponent(s.name)}`);
    out.push(h("h2", {}, `${s.name}.${s.namespace}`), routeTable(data, sparks.routeRules));
  }
  return out.length ? out : [h("p", {class: "muted"}, "no services")];
}

async function service() {
  const [namespace, name] = ARGUMENT.split("/");
  const q = `namespace=${encodeURIComponent(namespace)}`;
  const [described, data, findings, history, sparks] = await Promise.all([
    api(`/v1/services/${namespace}/${name}/describe`),
    api(`/v1/telemetry/routes?window=${WINDOW}&${q}&name=${encodeURIComponent(name)}`),
    api(`/v1/diagnose?service=${encodeURIComponent(name)}&${q}`),
    api("/v1/history?limit=200"), api(`/v1/ui/sparklines?window=${WINDOW}`)]);
  const mentions = history.filter((c) => JSON.stringify([c.before, c.after]).includes(
    `"${name}"`) && c.namespace === namespace).slice(0, 10);
  return [
    h("p", {}, `protocol ${described.protocol} (${described.protocolSource}), mTLS ` +
      `${described.mtlsMode}` + (described.declaredBy ? `, declared by ${described.declaredBy}`
      : "")),
    h("h2", {}, "Instances"),
    table(["NAME", "VERSION", "STATE"], described.instances.map((i) => [cell("name", i.name),
      cell("version", i.version || "-"), cell("state", i.state + (i.stateReason ?
      ` (${i.stateReason})` : ""))])),
    h("h2", {}, "Route rules in force"), routeTable(data, sparks.routeRules),
    h("h2", {}, "Policies in force"),
    h("pre", {}, JSON.stringify(described.policy, null, 2)),
    ...(described.rollouts || []).map((r) => h("p", {class: "rollout"},
      h("a", {href: "/ui/rollouts"}, `Rollout ${r.name}`), `: ${r.stable} → ${r.canary}, ` +
      `${r.phase} at step ${r.step || "-"}/${r.steps}, ${r.weight}% to ${r.canary}`)),
    h("h2", {}, "Findings"), findingList(findings),
    h("h2", {}, "Recent changes"), changeList(mentions)];
}

async function proxies() {
  const [data, nacks] = await Promise.all([api("/v1/proxies"), api("/v1/xds/nacks")
    .catch(() => [])]);
  const types = ["CDS", "EDS", "LDS", "RDS", "SRDS", "SDS"];
  const rows = data.map((p) => [cell("node", p.node), cell("state", p.state),
    cell("protocol", p.protocol), cell("connected", when(p.connectedAt)),
    ...types.map((t) => cell(t, p.types[t] ? `${p.types[t].state} ${
      p.types[t].ackedVersion || ""}`.trim() : "-"))]);
  return [table(["PROXY", "STATE", "XDS", "CONNECTED", ...types], rows,
    (i) => ({class: data[i].state === "SYNCED" ? "ok" : "failing"})),
    h("h2", {}, "NACKs"), nacks.length ? table(["PROXY", "TYPE", "AT", "MESSAGE"],
      nacks.map((n) => [n.node, n.type, when(n.at), n.message])) :
      h("p", {class: "muted"}, "no NACKs")];
}

function findingList(report) {
  const findings = report.findings || [];
  const blind = (report.notSeen || report.blind || []);
  const out = findings.map((f) => h("article", {class: `finding ${f.severity}`},
    h("h3", {}, `${f.code} ${f.severity}: ${f.subject}`), h("p", {}, f.cause),
    h("ul", {}, f.evidence.map((e) => h("li", {}, e))),
    h("p", {class: "fix"}, "fix: ", f.fix),
    f.docs ? h("p", {class: "muted"}, f.docs) : null));
  if (!findings.length) out.push(h("p", {class: "muted"}, report.summary || "no findings"));
  for (const b of blind) out.push(h("p", {class: "warning"}, typeof b === "string" ? b :
    JSON.stringify(b)));
  return h("div", {class: "findings"}, out);
}

async function diagnose() {
  return [findingList(await api("/v1/diagnose"))];
}

async function rollouts() {
  const data = await api("/v1/rollouts");
  if (!data.rollouts.length) return [h("p", {class: "muted"}, "no Rollouts")];
  return data.rollouts.map((r) => h("section", {class: `rollout ${r.phase}`},
    h("h2", {}, `${r.namespace}/${r.name}: ${r.stable} → ${r.canary}`),
    h("p", {}, `${r.phase}, step ${r.step || "-"}/${r.steps}, ${r.weight}% to ${r.canary}`),
    h("p", {}, r.message),
    r.analysis ? h("p", {class: "muted"}, `${r.analysis.outcome}: ${r.analysis.reason}`) : null,
    table(["AT", "PHASE", "WEIGHT", "REASON"], r.moves.map((m) => [when(m.at), m.phase,
      `${m.weight}%`, m.reason]))));
}

function diffLines(before, after) {
  // A line diff (longest common subsequence): enough for manifests of a few hundred lines.
  const a = before ? JSON.stringify(before, null, 2).split("\n") : [];
  const b = after ? JSON.stringify(after, null, 2).split("\n") : [];
  const n = a.length, m = b.length, best = Array.from({length: n + 1},
    () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
    best[i][j] = a[i] === b[j] ? best[i + 1][j + 1] + 1 : Math.max(best[i + 1][j], best[i][j + 1]);
  }
  const out = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) { out.push([" ", a[i]]); i++; j++; }
    else if (j < m && (i >= n || best[i][j + 1] >= best[i + 1][j])) out.push(["+", b[j++]]);
    else out.push(["-", a[i++]]);
  }
  return out;
}

function changeList(changes) {
  if (!changes.length) return h("p", {class: "muted"}, "no changes");
  return h("div", {}, changes.map((c) => h("details", {class: "change"},
    h("summary", {}, `revision ${c.revision} ${when(c.at)}: ${c.action} ${c.kind} ` +
      `${c.namespace ? c.namespace + "/" : ""}${c.name}`),
    h("pre", {class: "diff"}, diffLines(c.before, c.after).filter(([k]) => k !== " ")
      .map(([k, line]) => h("span", {class: k === "+" ? "add" : "del"}, `${k} ${line}\n`))))));
}

async function history() {
  return [changeList(await api("/v1/history?limit=50"))];
}

// The tap is live by itself: one stream, rows added as requests come.
let tapping = null;
async function tap() {
  if (tapping) return null;
  const form = h("form", {id: "tap-form"}, h("input", {id: "tap-target", value: ARGUMENT ||
    "", placeholder: "service or workload", "aria-label": "target"}),
    h("button", {type: "submit"}, "Tap"));
  const rows = h("tbody", {id: "tap-rows"});
  const status = h("p", {class: "muted", id: "tap-status"}, "name a service to tap");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    startTap(document.getElementById("tap-target").value, rows, status);
  });
  tapping = true;
  return [form, status, h("table", {}, h("thead", {}, h("tr", {}, ["TIME", "DIR", "FROM", "TO",
    "METHOD", "PATH", "STATUS", "MS"].map((x) => h("th", {}, x)))), rows)];
}

async function startTap(target, rows, status) {
  status.textContent = `attaching to ${target}`;
  const response = await fetch(`/v1/tap?target=${encodeURIComponent(target)}&max=500`,
    {credentials: "same-origin"});
  if (!response.ok) {
    const body = await response.json();
    status.textContent = body.error ? `${body.error.message} ${body.error.hint || ""}` :
      response.statusText;
    return;
  }
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline); buffer = buffer.slice(newline + 1);
      if (!line.trim()) continue;
      const event = JSON.parse(line);
      if (event.attached) status.textContent = `tapping ${target}: ` +
        `${event.attached.proxies.length} proxies`;
      if (event.request) {
        const r = event.request;
        const time = String(r.time || "-").split("T")[1] || "-";
        rows.prepend(h("tr", {class: r.status >= 500 ? "failing" : "ok"},
          [time, r.direction === "inbound" ? "in" : "out", r.source || r.sourceAddress || "-",
           r.destination || r.upstreamCluster || "-", r.method || "-", r.path || "-",
           r.status || "-", r.latencyMs ?? "-"].map((c) => h("td", {}, c))));
        while (rows.children.length > 200) rows.lastChild.remove();
      }
    }
  }
  status.textContent = "tap ended";
}

const PAGES = {topology, services, workloads, routes, service, proxies, diagnose, rollouts,
               history, tap};

let drawing = false;
async function draw() {
  if (drawing) return;
  drawing = true;
  try {
    const nodes = await PAGES[PAGE]();
    if (nodes !== null) content.replaceChildren(...nodes);
    document.body.classList.remove("error");
  } catch (error) {
    content.replaceChildren(h("p", {class: "error"}, `cannot read the mesh: ${error.message}`));
    document.body.classList.add("error");
  } finally {
    drawing = false;
    window.tulleUpdates += 1;
    document.body.dataset.updates = String(window.tulleUpdates);
  }
}

const live = document.getElementById("live");
const events = new EventSource("/ui/events");
events.addEventListener("update", () => {
  live.textContent = "live"; live.className = "live on";
  if (PAGE !== "tap") draw();
});
events.onerror = () => { live.textContent = "reconnecting"; live.className = "live off"; };
draw();
