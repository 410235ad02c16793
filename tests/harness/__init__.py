"""What the integration tests and the benchmarks share: real hubs, GPU and image helpers."""
