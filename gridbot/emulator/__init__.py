"""Loopback Binance and Bybit exchange (REST + WebSocket) for tests, the demo and benchmarks."""
