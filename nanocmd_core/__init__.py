"""nanocmd-serverless: the NanoCMD MDM command-workflow engine for AWS serverless.

Public, stable surface for workflow authors and integrators:

- ``nanocmd_core.workflow`` — ``Workflow``, ``Config``, step shapes, context codecs, events, errors;
- ``nanocmd_core.mdm.commands`` / ``.responses`` / ``.checkin`` — Apple MDM commands built as
  plists, responses typed per request type, check-in messages;
- ``nanocmd_core.plugins`` — ``WorkflowDeps`` and the ``nanocmd.workflows`` entry-point group;
- the store protocols of the subsystems (``subsystems.<name>.store`` / ``.storage``) and the
  MDM-server client protocol ``mdmserver.client.MDMServerClient``.

Everything else (``engine``, ``storage``, ``aws``, ``api``, ``webhook``, ``wiring``) is internal:
it may change between versions.
"""

__version__ = "0.1.0"
