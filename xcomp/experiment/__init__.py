"""The Hydra layer: schemas, resolvers, the job and the sweep callback that `run.py` composes and calls.

This is the only part of xcomp that imports Hydra; the components it builds (`xcomp.compression`,
`xcomp.pipeline`, `xcomp.evaluation`, `xcomp.tracking`) are plain Python. The package itself imports nothing:
`run.py` registers the schemas and resolvers (`xcomp.experiment.schema.register`) and calls the job
(`xcomp.experiment.job.run`).
"""
