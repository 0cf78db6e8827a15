"""`tulle diagnose`: live evidence in, ranked findings out, each with its cause and fix.

The pieces, in the order a run uses them:

- ``evidence.Evidence``: one frozen snapshot gathered once per run by the control plane
  (``tulle.controlplane.services.diagnosis``): the mesh snapshot, the telemetry window, each
  sidecar's endpoints as its Envoy sees them, xDS states and NACKs, identity status, recent
  changes.
- ``rules/``: pure functions ``(Evidence, Scope) -> Iterable[Finding]``, one module per area
  (``endpoints``, ``resilience``, ``limits``, ``routing``, ``identity``, ``controlplane``),
  each exporting ``RULES``; ``engine.all_rules()`` lists the areas.
- ``engine.diagnose``: runs every rule, checks each code is registered, keeps one finding per
  (code, subject), drops findings outside the scope, and ranks them (``rank.rank``: causes
  above the symptoms they share a resource with, then severity, then score).
- ``codes.CODES``: the registry of finding codes (TUL1001-TUL1099; below TUL1000 is
  `tulle analyze`'s).

Adding a finding:

1. Register a code: append ``FindingCode("TUL10NN", "short-slug", Severity.X, "title")`` to
   ``codes.CODES`` in your range's block. Codes are stable: never renumber or reuse one.
2. Write ``docs/diagnostics/TUL10NN.md`` (title line ``# TUL10NN: slug``, then what it means,
   the evidence it shows, how to fix it) and add a line to ``docs/diagnostics/findings.md``.
   ``tests/unit/diagnose/test_codes.py`` fails until both exist.
3. Write the rule in the area's module and add it to that module's ``RULES`` tuple::

       def my_rule(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
           for node, ref, values in evidence.edges():
               if values.get("timeout", 0):
                   yield Finding("TUL10NN", Severity.ERROR, score=60,
                                 subject=service_subject(ref),
                                 cause="one sentence saying what is wrong",
                                 evidence=("numbers and resource names", ...),
                                 fix="a command, or the field to change in which resource",
                                 related=(proxy_subject(node),))

   Name resources as ``kind/name.namespace`` (``model.subject``); put every resource the
   finding involves (the service, the policy or route that causes it) in ``related`` and the
   callers in ``sources``: scoping (``--from`` matches sources, ``--to`` the rest, ``-n``, a
   service) and cause/symptom linking read them. Set
   ``symptom=True`` for consequences another finding may explain (5xx on an edge).
4. Add table rows to ``tests/unit/diagnose/`` with a hand-built ``Evidence``, and, for a
   failure you can cause on loopback, an e2e test that breaks a mesh that way.

A rule must not raise on missing data (a proxy whose admin did not answer has
``ProxyEvidence.error`` set); the engine catches and reports a crashing rule, but its findings
are lost.
"""
