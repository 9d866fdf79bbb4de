"""The named scenarios: complete config files (`*.toml`), shipped with the package as its
data and read by `scheduler.scenarios` through `importlib.resources`."""
