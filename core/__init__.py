"""The ground floor: the words every package shares (errors, settings machinery, phone numbers,
tiers, roles, permissions, audit action names). It imports nothing of ours."""
