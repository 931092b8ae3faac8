"""One driver per firmware family behind the `RigDriver` protocol (see `miners.detect.make_driver`)."""
