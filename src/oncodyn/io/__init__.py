"""Run directories, fields and particle snapshots, checkpoints."""
