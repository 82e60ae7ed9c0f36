"""Processing nodes (filters, windows, inference, decisions), registered under `neuroflow.nodes`."""
