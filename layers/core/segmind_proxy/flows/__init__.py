"""Use cases over the ports: generate-or-serve, coalescing, billing, idempotent generation, v2 jobs (submit and
run), the reservation sweeper, access and usage. They name the domain's types and ports, never an adapter."""
