"""Benchmarks of rayqueue's services on 127.0.0.1 (`make bench`); results go to bench/results/."""
