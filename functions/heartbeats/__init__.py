"""The heartbeats function: MM2 Heartbeat records that prove a flow is alive and measure its latency."""
