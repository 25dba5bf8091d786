"""peergrid benchmarks: each prints figures beside a reference measured in the same run."""
