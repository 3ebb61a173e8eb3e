"""One module per family of benchmark cases; ``benchmarks/run.py`` runs them."""
