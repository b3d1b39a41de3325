"""The wire-level schema of a compiled .proto file, as plain JSON-able data.

    python tests/interop/proto_schema.py MODULE   # e.g. tritonclient.grpc.service_pb2

prints the schema of MODULE's file as JSON. test_wire_compatibility.py compares ours with
tritonclient's this way: the two register the same protobuf package `inference`, which one Python
process refuses, so tritonclient's side runs in a subprocess. This module imports only protobuf.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FileDescriptor


def describe(file: FileDescriptor) -> dict[str, Any]:
    """Package, services (method -> types and streaming), every message's fields and every enum's
    values, by full name: what decides whether two peers understand each other's bytes (and, for
    the text format, each other's names)."""
    messages: dict[str, dict[str, Any]] = {}
    enums: dict[str, dict[str, int]] = {}
    for message in file.message_types_by_name.values():
        _add_message(message, messages, enums)
    for enum in file.enum_types_by_name.values():
        _add_enum(enum, enums)
    services = {
        service.full_name: {
            method.name: {
                "input": method.input_type.full_name,
                "output": method.output_type.full_name,
                "client_streaming": method.client_streaming,
                "server_streaming": method.server_streaming,
            }
            for method in service.methods
        }
        for service in file.services_by_name.values()
    }
    return {
        "package": file.package,
        "dependencies": sorted(dependency.package for dependency in file.dependencies),
        "services": services,
        "messages": messages,
        "enums": enums,
    }


def _add_message(
    message: Descriptor, messages: dict[str, dict[str, Any]], enums: dict[str, dict[str, int]]
) -> None:
    messages[message.full_name] = {
        field.name: {
            "number": field.number,
            "type": field.type,
            "repeated": field.is_repeated,
            "packed": field.is_packed,
            "presence": field.has_presence,
            "message": field.message_type.full_name if field.message_type else None,
            "enum": field.enum_type.full_name if field.enum_type else None,
            "oneof": field.containing_oneof.name if field.containing_oneof else None,
        }
        for field in message.fields
    }
    # Nested messages include the entry types of map fields (ParametersEntry, ...).
    for nested in message.nested_types:
        _add_message(nested, messages, enums)
    for enum in message.enum_types:
        _add_enum(enum, enums)


def _add_enum(enum: EnumDescriptor, enums: dict[str, dict[str, int]]) -> None:
    enums[enum.full_name] = {value.name: value.number for value in enum.values}


if __name__ == "__main__":
    json.dump(describe(importlib.import_module(sys.argv[1]).DESCRIPTOR), sys.stdout)
