"""`make bench`: throughput and latency of the event worker against raw baselines."""
