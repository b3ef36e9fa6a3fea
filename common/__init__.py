"""rayqueue's pure domain: quantities, resources, the quota tree, ledger, queues and job shapes."""
