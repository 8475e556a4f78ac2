"""Apple MDM protocol models: commands, command responses, check-ins and the webhook event.

Submodules are imported explicitly (``nanocmd_core.mdm.commands`` etc.) and nothing is
re-exported here, so importing ``nanocmd_core.mdm.webhook`` in the lean webhook Lambda does not
load the command and response models as a side effect.
"""
