"""The web dashboard: pages served on the API port under ``/ui/``, read from the API's own
JSON by a little JavaScript, kept live by server-sent events. See docs/dashboard.md."""
