"""Origins: an organization's own storage, named by id in jobs (kiln.v1.OriginService)."""
