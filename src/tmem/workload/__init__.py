"""The workload benchmark."""
