"""Imported first by every package whose modules are commands (scratchnet.cli.COMMAND_PACKAGES),
before the imports that take a second or two: Ctrl-C meanwhile is one line and exit 130, as
run_cli makes it once the command runs, not a traceback; and before grpc, whose C core a client
command keeps quiet."""

from scratchnet.cli import quiet_grpc_core_in_client_commands, quiet_interrupt_while_starting

quiet_interrupt_while_starting()
quiet_grpc_core_in_client_commands()
