"""rayqueue's scheduler side: the kube-scheduler extender and the queue controller on one cache."""
