"""SCIM 2.0: the company's directory provisions Rollcall's (SPEC §10.3)."""
