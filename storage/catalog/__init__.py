"""The recording catalog: Core tables (``tables``), engines and the unit of work (``db``),
and schema migrations (``migrate``, scripts in ``storage/migrations``)."""
