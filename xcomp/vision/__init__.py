"""Vision side of VideoChat-Flash: the UMT-L video encoder (`xcomp.vision.umt`, configured by
`xcomp.vision.config`), the ToMe projector (`xcomp.vision.tome`) and frame preprocessing
(`xcomp.vision.processor`). The package re-exports nothing: import from the defining module."""
