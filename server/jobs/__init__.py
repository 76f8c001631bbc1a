"""The application layer: job use cases composed from the domain and the store."""
