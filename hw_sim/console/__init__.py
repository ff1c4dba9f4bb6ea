"""The duty officer's web console of the reference platform.

`python -m hw_sim.platform --web 127.0.0.1:PORT` serves one page that shows
alarms as they arrive, with their pictures, lets an officer acknowledge them
(the signed `ack` command) and shows each gateway's presence and health.

Three parts, each its own module:

- `record`: the SQLite record every part shares: events de-duplicated by id,
  pictures, presence and health, acknowledgements.
- `ingest`: the workers that consume protocol v1 from the broker (optionally
  several processes on one `$share/GROUP/...` subscription) and write the record.
- `web`: the aiohttp server: the page, a server-sent event stream of changes,
  pictures, and the acknowledge endpoint.

See docs/console.md.
"""
