"""Simulated hardware and the reference platform console for alarmgw."""
