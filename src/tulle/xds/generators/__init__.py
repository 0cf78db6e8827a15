"""Pure translators from model values to Envoy protobuf messages, one module per xDS type.

Each function reads only its arguments, so its output can be cached keyed on them.
"""
