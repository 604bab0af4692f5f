"""`edge report`: float PyTorch and every artifact measured on the same images in one run —
accuracy, fidelity to float, the stage a loss comes from, latency on each real runtime, per-layer
sensitivity — written as report.json, report.md and report.html."""
