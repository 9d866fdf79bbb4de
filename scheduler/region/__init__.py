"""A regional network (DESIGN.md section 12): hospitals that transfer the patients they cannot
take to a hospital with room, decided by a coordinator, in one process.

- `config`: `region.toml`, loaded and checked.
- `events`: the transfer protocol's events.
- `member`: a hospital of the region: the single hospital's scheduler, with transfer offers
  answered in its own tick and rooms reserved for accepted transfers; its auditor.
- `coordinator`: who is offered each pending request: `cpsat`, `nearest`, `even`, `none`.
- `network`: the region's tick: the hospitals, then the coordinator; pure state + events.
- `simulation`: the region simulated around it, and a recorded region log replayed.
- `audit`: the region's invariants, checked every tick.
- `bound`: the fluid bound of the region with transfers allowed.
- `bench`: the coordinators compared over paired replications.

The command line (`cli/region.py`) is a thin layer over these.
"""
