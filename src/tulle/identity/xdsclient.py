"""The certificate a sidecar presents to the control plane's xDS port, when xDS runs over TLS,
and the roots it checks the control plane's certificate against.

The agent keeps a one-secret SDS file in the workload's directory, naming its current
certificate and key files, and replaces it on every renewal; the bootstrap's xDS cluster reads
it from there (Envoy watches the directory). The key never leaves the host: the file names it.
"""

SECRET_NAME = "tulle-xds-client"
DIRECTORY = "xds-client"  # relative to Envoy's working directory, the workload's
FILE = f"{DIRECTORY}/secret.json"
# The roots the sidecar checks the control plane against, in the same directory: the agent
# rewrites them whenever the mesh's trust bundle changes (a root rotation), so that a new xDS
# connection after the rotation trusts the control plane's new certificate.
ROOTS_SECRET_NAME = "tulle-xds-roots"
ROOTS_FILE = f"{DIRECTORY}/roots.json"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
