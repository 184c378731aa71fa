"""Coverage-guided fuzzing of every parser fed by the network or by users, with atheris:
`python -m bench.fuzz` (see bench/fuzz/run.py). Nothing here imports the exporter, so the
worker can instrument it as it imports it."""
