"""Training sources: where training samples come from, one module each (`xcomp.train.sources.source` has the
interface and the registry)."""
