"""How the program starts: the ``patchwork-gateway`` command, its configuration,
its processes, the demo and ``check``."""
