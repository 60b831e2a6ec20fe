"""Identities and roles: who calls the server, and what each role may do.

- :mod:`~modelyard.auth.roles`: :class:`Role` (viewer < trainer < approver < admin) and
  :class:`Identity` (a token's name and role);
- :mod:`~modelyard.auth.tables`: the ``api_tokens`` rows (names, roles, sha256 of each token);
- :mod:`~modelyard.auth.tokens`: ``create_token``, ``list_tokens``, ``revoke_token``,
  ``identity_of``, ``tokens_exist``.

The HTTP side (checking the bearer token before a body is read, the role each route needs,
OpenAPI's security scheme) is :mod:`modelyard.api.auth`; ``modelyard tokens`` is the CLI.
"""

from modelyard.auth.roles import ANONYMOUS, SHARED_TOKEN_NAME, Identity, Role

__all__ = ["ANONYMOUS", "SHARED_TOKEN_NAME", "Identity", "Role"]
