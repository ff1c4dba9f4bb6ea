"""What a modem's +CMS/+CME ERROR codes mean, and what a technician should do about them.

The tables are data: `gateway.drivers.modem.at` turns an error line into an exception
with the meaning and the hint in its message; the `CHECK_*` hints are also the words
`ModemStatus.problems()` and a failed SMS's diagnosis use.
"""

CHECK_SIM = "check that a SIM is inserted (power the modem off first) and its contacts are clean"
CHECK_PIN = "put the SIM's PIN in the modem pin_file, or remove the PIN lock with a phone"
CHECK_NET = ("the modem is not on a network: check the antenna, the signal (AT+CSQ) and that"
             " the SIM is activated and paid")
CHECK_PLAN = ("check with the carrier that the SIM may send SMS to ordinary numbers (many IoT"
              " SIMs are data-only or allow only whitelisted numbers) and has credit")

#: +CMS ERROR codes (27.005 3.2.5, and the network's RP/TP causes below 256).
CMS_ERRORS: dict[int, tuple[str, str]] = {
    1: ("unassigned number", "the duty number does not exist: check it in the config"),
    8: ("operator determined barring", CHECK_PLAN),
    10: ("call barred", CHECK_PLAN),
    21: ("short message transfer rejected", CHECK_PLAN),
    27: ("destination out of service", "the duty phone is unreachable; the SMS was refused"),
    28: ("unidentified subscriber", CHECK_PLAN),
    29: ("facility rejected", CHECK_PLAN),
    30: ("unknown subscriber", "the duty number is not known to the network: check it"),
    38: ("network out of order", "the carrier's network has a fault: try again later"),
    41: ("temporary failure", "the network failed for now: try again"),
    42: ("congestion", "the network is congested: try again"),
    47: ("resources unavailable", "the network is busy: try again"),
    50: ("requested facility not subscribed", CHECK_PLAN),
    69: ("requested facility not implemented", CHECK_PLAN),
    96: ("invalid mandatory information", "the modem built a bad message: report it with the"
         " modem model"),
    111: ("protocol error", "try again; if it persists, report it with the modem model"),
    300: ("ME failure", "the modem failed internally: power-cycle it"),
    301: ("SMS service of ME reserved", "another program is using the modem's SMS service"),
    302: ("operation not allowed", "the modem is not ready for SMS (SIM still starting or not"
          " registered): wait a minute and try again"),
    303: ("operation not supported", "the modem does not support UCS2 text-mode SMS: report"
          " the modem model"),
    304: ("invalid PDU mode parameter", "report it with the modem model"),
    305: ("invalid text mode parameter", "the modem refused the message format: report it with"
          " the modem model"),
    310: ("SIM not inserted", CHECK_SIM),
    311: ("SIM PIN required", CHECK_PIN),
    312: ("PH-SIM PIN required", "the modem is locked to another SIM: use the SIM it was sold"
          " with or have it unlocked"),
    313: ("SIM failure", CHECK_SIM + "; replace the SIM if it persists"),
    314: ("SIM busy", "the SIM is still starting: wait a minute and try again"),
    315: ("SIM wrong", "the modem does not accept this SIM: try another"),
    316: ("SIM PUK required", "the SIM is blocked: unblock it in a phone with the carrier's PUK"),
    317: ("SIM PIN2 required", "unlock PIN2 with a phone"),
    318: ("SIM PUK2 required", "unblock PIN2 with a phone and the carrier's PUK2"),
    320: ("memory failure", "power-cycle the modem"),
    322: ("memory full", "delete stored messages (AT+CMGD=1,4)"),
    330: ("SMSC address unknown", "set the SMS centre with AT+CSCA=\"+86...\" (the number comes"
          " from the carrier) and save it with AT+CSAS"),
    331: ("no network service", CHECK_NET),
    332: ("network timeout", "the network did not confirm: weak signal or congestion; the SMS"
          " may or may not have gone"),
    340: ("no +CNMA acknowledgement expected", "report it with the modem model"),
    500: ("unknown error", "the modem gave no reason; the usual ones are no SMS service or no"
          " credit on the SIM, a weak signal or a wrong number"),
}

#: +CME ERROR codes (27.007 9.2) that these commands can meet.
CME_ERRORS: dict[int, tuple[str, str]] = {
    0: ("phone failure", "power-cycle the modem"),
    3: ("operation not allowed", "the modem refused in its current state: wait and try again"),
    4: ("operation not supported", "the modem lacks this command: report the modem model"),
    10: ("SIM not inserted", CHECK_SIM),
    11: ("SIM PIN required", CHECK_PIN),
    12: ("SIM PUK required", "the SIM is blocked: unblock it in a phone with the carrier's PUK"),
    13: ("SIM failure", CHECK_SIM + "; replace the SIM if it persists"),
    14: ("SIM busy", "the SIM is still starting: wait a minute and try again"),
    15: ("SIM wrong", "the modem does not accept this SIM: try another"),
    16: ("incorrect password", "the PIN in the pin_file is wrong: fix it (three wrong PINs block"
         " the SIM)"),
    17: ("SIM PIN2 required", "unlock PIN2 with a phone"),
    18: ("SIM PUK2 required", "unblock PIN2 with a phone and the carrier's PUK2"),
    30: ("no network service", CHECK_NET),
    31: ("network timeout", "the network did not answer: check the signal"),
    32: ("network not allowed - emergency calls only", "the SIM is not accepted by the network:"
         " activated, paid, real-name registered?"),
    100: ("unknown", "the modem gave no reason"),
}

#: Codes that make the error a `ModemSimError` or a `ModemNetworkError`: the fix is in
#: the SIM or the network, not in the message.
SIM_CMS = frozenset({310, 311, 312, 313, 314, 315, 316, 317, 318})
NET_CMS = frozenset({331, 332})
SIM_CME = frozenset({10, 11, 12, 13, 14, 15, 16, 17, 18})
NET_CME = frozenset({30, 31, 32})
