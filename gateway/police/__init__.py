"""The police loop: what happens after an alarm reaches the platform, or does not.

`dispatcher` carries out the platform's signed commands (ack, drill, ping,
snapshot, output) on threads of its own; `escalation` acts locally (sounder, SMS)
when no acknowledgement comes; `drills` keeps each drill's timeline. None of it
runs in the engine's or the uplink's thread.
"""
