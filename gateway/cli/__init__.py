"""The technician's side: `alarmgw`, the one program with a subcommand for every question
asked on site (run, check-config, status, inputs, queue, drills, test-alarm, sim,
selftest, logs, snapshot, demo, modbus-scan, outputs, output).

This package is the top layer: it may use anything in `gateway`, and nothing in
`gateway` uses it. It talks to the running service over the control socket, or reads
the store read-only when the service is down; the simulator is reached only through
`gateway.drivers.backends`. The modules:

- `program`: the parser and `main` (the entry point, re-exported here: pyproject's
  `alarmgw = "gateway.cli:main"` and `python -m gateway`);
- `common`: the exit-code rule and what every command uses (the config, the control
  socket, printing text or one JSON document);
- `config_commands`: check-config; `directories`: whether the state and runtime
  directories can be used (check-config, run);
- `service_commands`: run, demo, status, inputs, queue, drills, test-alarm;
- `hardware_commands`: sim, snapshot, modbus-scan, outputs, output;
- `diagnose`: status, inputs --watch and selftest as the technician sees them;
  `status`: the status screen and the offline status document; `selftest`: the checks;
  `logs`: the journal, or where the log went.
"""

from gateway.cli.program import main

__all__ = ["main"]
