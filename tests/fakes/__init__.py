"""Test doubles that speak real protocols (HTTP on loopback), shared by unit, integration and e2e tests."""
