"""kiln server: the JobService over Connect and gRPC, the job store and dispatch."""
