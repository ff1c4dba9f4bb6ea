"""SIA DC-09: the second alarm path, to an alarm-receiving centre (ARC).

DC-09 (SIA DC-09-2013 and later) carries alarm messages, here Ademco Contact ID
("ADM-CID": qualifier, event code, partition, zone), from a panel to an ARC's receiver over
TCP or UDP, each answered with ACK, NAK (with the receiver's clock) or DUH, optionally
AES-encrypted. The modules:

- `frames`: the framing (CRC-16/ARC, length, body), AES, building a message, reading a
  reply (`parse_reply`), and `ReplyBuffer`, which cuts a TCP stream into frames.
- `link`: `Dc09Link`, one connection to a receiver: send one message, wait for its answer.

Layer 4, beside `uplink`: it may use errors, clock, logs, config, store and events, never
the uplink or the drivers.
"""
