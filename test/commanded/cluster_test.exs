# Commanded's own adapter test cases against ExESDB.Commanded.Adapter with
# its store a member of a 3-node cluster (db_type: :cluster; this node and
# two :peer nodes, raft on loopback): appends on any member go through the
# gateway to the leader, persistent subscriptions run on the leader. Runs
# only when Commanded is compiled in (COMMANDED_PATH, `make test-commanded`)
# and raft is built.
if Code.ensure_loaded?(Commanded.EventStore.Adapter) and
     ExESDB.Test.ClusterHelpers.cluster_support?() do
  defmodule ExESDB.Commanded.ClusterAppendEventsTest do
    use ExESDB.Commanded.AdapterCase
    @moduletag cluster: true
    use Commanded.EventStore.AppendEventsTestCase, event_store: ExESDB.Commanded.Adapter
  end

  defmodule ExESDB.Commanded.ClusterSnapshotTest do
    use ExESDB.Commanded.AdapterCase
    @moduletag cluster: true
    use Commanded.EventStore.SnapshotTestCase, event_store: ExESDB.Commanded.Adapter
  end

  defmodule ExESDB.Commanded.ClusterSubscriptionTest do
    use ExESDB.Commanded.AdapterCase
    @moduletag cluster: true
    use Commanded.EventStore.SubscriptionTestCase, event_store: ExESDB.Commanded.Adapter
  end
end
