"""The admin port: Management API, OpenAPI document, event debugger, UI."""
