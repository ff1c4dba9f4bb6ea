"""Supervision: the watches that turn a silent problem into a fault event.

The clock that stays unsynchronised (`clock_watch`), the state directory's filesystem
filling up (`disk_watch`), and the live feed of input changes a technician watches
on site (`input_feed`). Each reads memory and a syscall or two and writes nothing
unless what it watches changes; a fault goes through the engine's door like any input.
"""
