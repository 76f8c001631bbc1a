"""Where output files live and how clients download them."""
