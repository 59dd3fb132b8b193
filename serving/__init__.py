"""gRPC server, per-model batcher, model registry, metrics, client library and CLI."""
