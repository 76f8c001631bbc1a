"""The edge: Connect (ASGI) and gRPC (grpc.aio) adapters over one JobService."""
