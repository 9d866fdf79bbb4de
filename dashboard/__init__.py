"""Watching and reviewing runs: a state projection fed by decisions, the live web dashboard
with its Prometheus metrics, and the HTML report. An adapter at the edge: it reads what the
scheduler publishes (each tick's decisions and the events it consumed), never the core's
objects."""
