"""alarmgw: the school one-key alarm gateway.

Reads panic buttons, keeps every event on disk until the police platform
has acknowledged it, and delivers it over MQTT 5.
"""

__version__ = "0.1.0"
