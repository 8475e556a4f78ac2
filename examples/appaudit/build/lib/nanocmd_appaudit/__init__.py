"""An example workflow package for nanocmd-serverless."""
