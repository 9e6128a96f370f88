"""The demo pipeline on the embedded model and its report (`make demo`)."""
