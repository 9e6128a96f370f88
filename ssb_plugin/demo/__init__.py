"""The CPU demo (`make demo`, `ssb-demo`): its problem generator, pipeline, held-out KL and report."""
