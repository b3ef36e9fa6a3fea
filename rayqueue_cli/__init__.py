"""`kubectl rayqueue`: the quota tree, a job's place and estimate, a leaf's queue, and what-if, for tenants."""
