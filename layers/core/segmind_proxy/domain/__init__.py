"""Rules and values with no I/O: the request and catalog, cache key and policy, pricing, tenants, usage, jobs,
images, errors (no HTTP statuses), and the ports (`ports.py`) through which the flows reach the outside world."""
