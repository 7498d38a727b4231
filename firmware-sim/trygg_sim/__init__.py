"""Simulated devices that speak the real transports, for demos, tests and load."""

from .zigbee import SimulatedHome, SimulatedZigbeeDevice, demo_home, run_homes

__all__ = ["SimulatedHome", "SimulatedZigbeeDevice", "demo_home", "run_homes"]
