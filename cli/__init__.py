"""How the program starts: ``main`` (the command's arguments, and which
module runs each command), one module per command (``serving`` for
``serve`` and ``run``, ``syncing``, ``status``, ``check/``, and ``storage``
for ``backup`` and the mirror's files), the configuration (``config``),
the child processes (``supervisor``) and the demo."""
