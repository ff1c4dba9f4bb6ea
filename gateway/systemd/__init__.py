"""The service's side of systemd: the notify protocol and the watchdog that earns each ping.

(The unit file itself and the installer live in the repository's top-level `systemd/`.)
"""
