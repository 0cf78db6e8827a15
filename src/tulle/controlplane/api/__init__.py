"""The control plane's HTTP layer: the only code that sees aiohttp requests.

Each area module turns requests into typed calls on the domain services
(``tulle.controlplane.services``) and their results into JSON, and declares its routes as a
table (:class:`tulle.controlplane.api.routing.Route`). :mod:`tulle.controlplane.api.server`
assembles the tables into the two applications: the API port (API token) and the agents' TLS
identity port.
"""
