"""Benchmarks of slea: ``python -m benches <name>``; figures go to benches/RESULTS.md."""
