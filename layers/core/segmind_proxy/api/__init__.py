"""The front doors (Segmind v1 and v2, usage, health and docs): each parses its request once, builds its scope, calls
a flow and shapes the answer; `segmind_errors.py` maps domain errors to Segmind's statuses, bodies and headers."""
