"""Transports: they bring raw device messages to the pipeline and reconnect by themselves."""

from .mqtt import Zigbee2MqttTransport

__all__ = ["Zigbee2MqttTransport"]
