"""The ``trygg`` command and the one-process demo that ties the programs together."""

__all__: list[str] = []
