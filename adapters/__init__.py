"""Chat front ends: each module translates one platform's events into calls on `core.service`."""
