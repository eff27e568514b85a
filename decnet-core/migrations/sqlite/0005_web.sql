-- decnet web: the attackers listing sorted by event count (and the overview's top attackers)
-- pages through this index instead of sorting every attacker.
CREATE INDEX attackers_events ON attackers (event_count);
