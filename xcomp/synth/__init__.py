"""Synthetic long-video QA suite: procedurally generated videos with exact answers.

Objects and their drawing are in `xcomp.synth.drawing`, question families in `xcomp.synth.families` and
`xcomp.synth.follow_up`, frames in `xcomp.synth.scene`, suites on disk in `xcomp.synth.generate` (cached by
`xcomp.synth.cache`), training mixtures in `xcomp.synth.mixture`. The package re-exports nothing: import from the
defining module."""
