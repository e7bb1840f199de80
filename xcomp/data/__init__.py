"""QA sources: the synthetic suite, `xcomp synth` JSONL suites and the long-video benchmarks, one module each
(`xcomp.data.source` has the interface and the registry)."""
