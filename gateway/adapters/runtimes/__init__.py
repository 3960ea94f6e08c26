"""Where workloads run: one Docker engine (containers) or a Swarm (services)."""
