"""The built-in workflows, one module each."""
