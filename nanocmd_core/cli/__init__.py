"""``nanocmdctl``: the command line of the management API, for admins who live in a terminal.

Installed with the ``cli`` extra (``pip install 'nanocmd-serverless[cli]'``); it needs click, rich
and urllib3 only and talks to the API over HTTP, so no Lambda function imports it and the
dependencies layer does not carry click or rich.
"""
