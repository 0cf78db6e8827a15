"""tulle: a service mesh built on Envoy, with troubleshooting as a first-class feature."""

__version__ = "0.1.0"
