"""schemathesis hooks for promolens (SCHEMATHESIS_HOOKS=promolens_hooks).

One check beside schemathesis' own: the role table holds. Each operation's security requirement
in /openapi.json lists the roles that may call it; a request made with a key of another role
must not succeed, whatever schemathesis sent.
"""

import os

import schemathesis

ROLE = os.environ["PROMOLENS_ROLE"]


@schemathesis.check
def role_table_holds(ctx, response, case):
    """A key whose role the operation does not list gets no 2xx."""
    requirements = case.operation.definition.raw.get("security") or []
    roles = {role for requirement in requirements for role in requirement.get("api_key", [])}
    needs_key = any("api_key" in requirement for requirement in requirements)
    if needs_key and ROLE not in roles and 200 <= response.status_code < 300:
        raise AssertionError(
            f"a key of role {ROLE} may not call {case.method} {case.path} "
            f"(roles: {sorted(roles)}), yet it was answered {response.status_code}"
        )
