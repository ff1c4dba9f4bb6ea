"""The snapshot lane: pictures linked to every alarm, from before and after, never in its way.

Each configured camera gets a `CameraUnit` with two threads of its own:

- the *sampler* keeps the pre-alarm ring (the last `pre_frames` pictures,
  one every `pre_interval_s`, in memory only) and probes the camera's
  health every `probe_interval_s`; it writes nothing to disk;
- the *shooter* takes the shots after an alarm: `shots` pictures,
  `interval_s` apart, the first at once. One capture serves every alarm
  whose shot is due, so two buttons pressed together cost the camera one
  request, not two.

The engine thread only touches this lane through two calls that never
wait on a camera: `plan()` (inside the commit, it freezes the ring's
current frames and lists what will follow in the event's `snapshots`
field) and `on_committed()` (after the commit, it hands the event to each
linked camera's shooter). The alarm itself is already on disk by then and
the uplink sends it first: snapshots sit in the outbox's bulk lane, which
the uplink drains only after the alarm and event lanes, and which gives
way (oldest first) when the store's byte budget is full.

Every picture listed in an event arrives at the platform as one message on
`snapshot/{event_id}/{camera}`: a JPEG, or, when the capture failed, a
`snapshot_failed` JSON record on `snapshot/{event_id}/{camera}/failed`
(docs/protocol/README.md). A camera whose captures fail `fault_after` times in a
row becomes a `fault` event (video loss) and a `fault_cleared` when a
capture succeeds again.
"""


from gateway.snapshots.lane import SnapshotLane, capture_report
from gateway.snapshots.unit import SNAPSHOT_TYPES, CameraHealth, CameraUnit

__all__ = ["SNAPSHOT_TYPES", "CameraHealth", "CameraUnit", "SnapshotLane", "capture_report"]
