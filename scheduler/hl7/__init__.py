"""HL7 v2 in and out, in plain Python: the field specs of `[hl7]`, the mapping of ADT
messages to inbound events and their acknowledgements, and the decisions as ADT messages.
The listener that serves MLLP is `scheduler.distributed.hl7_listener`; its ledger and the
embedded run's inbox are `scheduler.db.hl7`."""
