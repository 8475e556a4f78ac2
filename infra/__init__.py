"""Infrastructure helpers: the local stack (``infra.local``) and build/deploy glue around template.yaml."""
