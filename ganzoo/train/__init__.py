"""The architecture-agnostic trainer: engine, data feed, EMA, checkpoints, logging, loop."""
