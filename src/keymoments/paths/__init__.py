"""Paths: how journeys really run. The process map, variants and paths, the journey
as designed against the journeys as they ran, channel switching, the consistency of
the experience across agents, teams, channels and languages, and event-log export
for process-mining tools."""
