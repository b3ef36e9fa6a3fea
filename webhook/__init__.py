"""rayqueue's admission webhook: mutating and validating admission for RayJobs, Pods and the quota tree."""
