#!/bin/sh
# Stands in for etcd in a test of start-up failure reporting: logs a reason and exits.
echo "etcdmain: simulated failure: disk full" >&2
exit 3
