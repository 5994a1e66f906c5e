"""Destinations: where events are delivered."""
