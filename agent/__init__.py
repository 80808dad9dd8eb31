"""dos_agent: the DOS Edge gateway agent (Semtech UDP in, LoRaWAN session layer, schema decode, MQTT out) and the
`dos-edge` command line."""
