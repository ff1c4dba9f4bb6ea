"""The `alarmgw` program: its parser (every subcommand and option) and `main`.

`main` runs the subcommand and turns what went wrong into the exit code of the rule in
`gateway.cli.common` (a config error 2, a service that does not answer 3, any other
gateway error 1). Usage errors too: with `--json` anywhere on the command line they
come as one JSON document, like every other error. The subcommands themselves are in
`config_commands`, `service_commands`, `hardware_commands`, `diagnose` and `logs`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from gateway import __version__
from gateway.cli.common import (
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    EXITS_EPILOG,
    fail,
    not_running,
    print_json,
    wants_json,
)
from gateway.cli.config_commands import cmd_check_config
from gateway.cli.diagnose import cmd_selftest
from gateway.cli.hardware_commands import (
    SIM_CAMERA_MODES,
    SIM_FAULT_MODES,
    cmd_modbus_scan,
    cmd_output,
    cmd_outputs,
    cmd_sim,
    cmd_snapshot,
)
from gateway.cli.inspect_commands import add_inspect_arguments, cmd_inspect
from gateway.cli.logs import add_logs_arguments, cmd_logs
from gateway.cli.service_commands import (
    cmd_demo,
    cmd_drills,
    cmd_inputs,
    cmd_queue,
    cmd_run,
    cmd_status,
    cmd_test_alarm,
)
from gateway.config import DEFAULT_PATH
from gateway.errors import ConfigError, GatewayError, ServiceNotRunningError


class UsageError(Exception):
    """A command line argparse refuses: `prog` and `message` as argparse says them."""

    def __init__(self, prog: str, message: str, usage: str) -> None:
        self.prog = prog
        self.message = message
        self.usage = usage
        super().__init__(f"{prog}: error: {message}")


class _Parser(argparse.ArgumentParser):
    """argparse, raising UsageError instead of printing and exiting, so that `main` can
    say it as JSON when --json was asked for (subparsers are made of the same class)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message, self.format_usage())


_NOT_RUNNING_3 = "3 the service is not running"


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="alarmgw", description="School one-key alarm gateway.",
                 epilog=EXITS_EPILOG)
    ap.add_argument("--version", action="version", version=f"alarmgw {__version__}")
    ap.add_argument("-c", "--config", help=f"config file (default $ALARMGW_CONFIG or"
                    f" {DEFAULT_PATH})")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str,
            json_flag: bool = False, exits: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help,
                           epilog=f"exit codes: {exits}" if exits else EXITS_EPILOG)
        p.set_defaults(func=fn)
        if json_flag:
            p.add_argument("--json", action="store_true",
                           help="machine-readable output: one JSON document, errors included")
        return p

    p = add("run", cmd_run, "run the service (what systemd starts)",
            exits="0 stopped by SIGTERM or SIGINT; 1 failed (systemd restarts it); 2 a config"
            " error, also a state or runtime directory it cannot create or write (systemd"
            " does not restart it: fix the config)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set broker.port=8884")
    p = add("check-config", cmd_check_config, "validate a config file and its directories and"
            " print a summary", json_flag=True,
            exits="0 the config is valid; 2 it is not, or a directory in it cannot be used")
    p.add_argument("file", nargs="?", help="config file (default: --config)")
    add("status", cmd_status, "one screen: uplink, queue, clock, disk, faults, inputs,"
        " versions (exit 0 healthy, 1 needs attention, 3 not running)", json_flag=True,
        exits="0 healthy; 1 needs attention (uplink down, a fault open); 2 bad config; 3 the"
        " service is not running (what the disk says is printed all the same)")
    p = add("inputs", cmd_inputs, "every input and its state", json_flag=True,
            exits=f"0 fine; 2 bad config; {_NOT_RUNNING_3}")
    p.add_argument("--watch", action="store_true",
                   help="follow changes and debounce glitches live as buttons are pressed"
                   " (with --json: one JSON document per line)")
    p.add_argument("--count", type=int, default=None,
                   help="with --watch: stop after this many changes")
    p.add_argument("--duration", type=float, default=None,
                   help="with --watch: stop after this many seconds")
    add("selftest", cmd_selftest, "check config, store, broker (TLS + login), uplink, inputs,"
        " faults and clock: PASS or FAIL each", json_flag=True,
        exits="0 every check passed; 1 a check FAILED; 2 the config does not load; 3 the"
        " service is not running (every other check still runs)")
    p = add("logs", cmd_logs, "the service's recent log (journalctl), warnings and worse"
            " unless --all; where there is no journal of it, where its log goes",
            json_flag=True,
            exits="0 shown; 1 no journal has the service's log (it says where the log goes"
            " instead), or journalctl failed")
    add_logs_arguments(p)
    p = add("queue", cmd_queue, "what waits for the uplink", json_flag=True,
            exits=f"0 fine; 2 bad config; {_NOT_RUNNING_3} (the store is read directly)")
    p.add_argument("--limit", type=int, default=50, help="rows to list (default 50)")
    p = add("test-alarm", cmd_test_alarm, "send a test (or drill) event end to end",
            json_flag=True, exits="0 committed; 1 the service refused it; 2 bad config or an"
            f" input the config does not have; {_NOT_RUNNING_3}")
    p.add_argument("point", help="input id from the config")
    p.add_argument("--drill", action="store_true", help="a drill, not a test")
    p.add_argument("--path", choices=("all", "dc09"), default="all",
                   help="all: a test event on every path (default); dc09: a Contact ID 601"
                   " test to the receiving centre alone, not stored, with its round trip")
    p = add("drills", cmd_drills, "each drill's timeline and durations", json_flag=True,
            exits=f"0 fine; 2 bad config; {_NOT_RUNNING_3} (the store is read directly)")
    p.add_argument("--limit", type=int, default=20, help="drills to list (default 20)")
    p = add("inspect", cmd_inspect, "inspection (巡检): test buttons without calling the"
            " police (start, status, stop), and the report (passed, failed, not tested)",
            exits="0 done (report: every point passed); 1 the service refused it, or a point"
            " failed or was not tested; 2 bad usage or an input the config does not have;"
            f" {_NOT_RUNNING_3} (report reads the store directly)")
    add_inspect_arguments(p)
    p = add("sim", cmd_sim, "drive the simulated hardware of a service on the simulator",
            json_flag=True, exits="0 done; 1 the service refused it; 2 bad usage: an input,"
            " module or camera the config does not have or does not simulate, or a wrong"
            f" mode; {_NOT_RUNNING_3}")
    p.add_argument("action", choices=("press", "release", "bounce", "modbus-fault", "camera"),
                   help="press, release or bounce an input; modbus-fault MODULE MODE breaks a"
                   " simulated Modbus module; camera CAMERA MODE a simulated camera")
    p.add_argument("input", help="input id (modbus-fault: the module's id; camera: its id)")
    p.add_argument("mode", nargs="?", help="modbus-fault: " + ", ".join(SIM_FAULT_MODES)
                   + "; camera: " + ", ".join(SIM_CAMERA_MODES))
    p.add_argument("--latency", type=float, metavar="SECONDS",
                   help="sim camera: delay before each picture")
    p.add_argument("--count", type=int, help="modbus-fault: only the next N requests")
    p.add_argument("--code", type=int, help="modbus-fault exception: the exception code"
                   " (default 4, server device failure)")
    p.add_argument("--period", type=float, help="modbus-fault flap: seconds per silent +"
                   " answering cycle (default 2)")
    p.add_argument("--delay", type=float, help="modbus-fault slow: extra seconds per reply"
                   " (default 0.5)")
    p = add("modbus-scan", cmd_modbus_scan, "find the Modbus units that answer on a bus",
            json_flag=True, exits="0 a unit answers; 1 none does, or the bus cannot be opened;"
            " 2 bad usage or a bus the config does not have; 3 the bus is simulated and the"
            " service (which runs its modules) is not running")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial port of an RS-485 bus, e.g. /dev/ttyUSB0")
    where.add_argument("--host", help="address of a Modbus TCP module or gateway")
    where.add_argument("--bus", help="a bus of the config, by id (stop the service first if"
                       " it is an RS-485 bus; a simulated bus is scanned where the running"
                       " service serves it)")
    p.add_argument("--baud", type=int, default=9600, help="RS-485 baud rate (default 9600)")
    p.add_argument("--parity", choices=("N", "E", "O"), default="N",
                   help="RS-485 parity (default N)")
    p.add_argument("--stopbits", type=int, choices=(1, 2), default=1,
                   help="RS-485 stop bits (default 1)")
    p.add_argument("--tcp-port", type=int, default=502, help="Modbus TCP port (default 502)")
    p.add_argument("--units", default=None,
                   help="unit ids to ask, e.g. 1-32 or 1,3,5-7 (default 1-32; TCP: 1 and 255)")
    p.add_argument("--timeout-ms", type=int, default=None,
                   help="reply timeout per unit in ms (default 100; the bus's with --bus)")
    add("outputs", cmd_outputs, "every output, its state and what holds it on", json_flag=True,
        exits=f"0 fine; 2 bad config; {_NOT_RUNNING_3}")
    p = add("output", cmd_output, "switch an output by hand: on (for a time or until off), off",
            json_flag=True, exits="0 switched; 1 the output is faulty or the service refused;"
            f" 2 bad usage or an output the config does not have; {_NOT_RUNNING_3}")
    p.add_argument("output", help="output id from the config")
    p.add_argument("action", choices=("on", "off"), help="off also ends every link's hold")
    p.add_argument("--for", dest="for_s", type=float, default=None, metavar="SECONDS",
                   help="on: switch off again after this many seconds")
    p = add("snapshot", cmd_snapshot, "take one picture with a camera: size, resolution, time,"
            " or exactly why not", json_flag=True,
            exits="0 a picture; 1 none (it says why); 2 bad usage or a camera the config does"
            " not have; 3 the camera is simulated and the service is not running")
    p.add_argument("camera", help="camera id from the config")
    p.add_argument("-o", "--output", metavar="FILE", help="save the JPEG here")
    p = add("demo", cmd_demo, "the whole system on the simulator: broker, gateway, platform",
            exits="0 ran and stopped; 1 a step failed; 2 no simulator config")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds (default: until Ctrl-C)")
    return ap


def _usage_error(exc: UsageError, as_json: bool) -> int:
    if as_json:
        print_json({"ok": False, "error": f"{exc.prog}: {exc.message}",
                    "usage": exc.usage.strip()})
    sys.stderr.write(exc.usage)
    print(f"{exc.prog}: error: {exc.message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run `alarmgw ARGV...`; return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        return _usage_error(exc, "--json" in argv)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        if wants_json(args):
            print_json({"ok": False, "error": f"config error: {exc}", "path": exc.path,
                        "key": exc.key, "problem": exc.problem})
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ServiceNotRunningError as exc:
        return not_running(args, exc)
    except GatewayError as exc:
        return fail(args, EXIT_FAIL, f"error: {exc}")
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
