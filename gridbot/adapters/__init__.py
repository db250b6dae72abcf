"""Adapters own the SDK objects: they forward raw frames, report link changes and fetch REST seeds."""
