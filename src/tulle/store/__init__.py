"""Persistent store: every applied resource, its history, and workload registrations."""

from tulle.store.base import ApplyResult, Change, Store, StoredResource

__all__ = ["ApplyResult", "Change", "Store", "StoredResource"]
