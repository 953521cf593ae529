"""Tools around the experiments: sweeps and searches, comparisons, tables, generation."""
