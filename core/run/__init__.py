"""A run's items: the item loop, batches and flushes, exits, the group and its ledger, the report and
bottleneck hints, what the monitor measures (queue loads, the timeline), the multi-machine run. Imports the
transports and everything below them."""
